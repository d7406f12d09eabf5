"""Subject tags read as commands (SPEC 6.1): what each tag says, resolved against the config.

``parsers/subject.py`` finds the tags; this module says what they mean. Whether a tag is a
command (a team sender, a tag new against the parent's subject) is the engine's call;
``new_tags`` gives it the second half. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from maildaemon.config import Config
from maildaemon.durations import BusinessDuration, parse_business_duration
from maildaemon.parsers.subject import subject_tags

__all__ = ["Tag", "TagKind", "new_tags", "parse_due", "parse_tags"]

TagKind = Literal["owner", "stage", "client", "due", "close", "ack", "ref"]

# Every tag subject.py finds is one bracket group with no bracket inside, so scanning the groups
# and asking subject_tags about each one gives the tags with the text as written.
_GROUP = re.compile(r"\[[^\[\]]*\]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_CLOSE = frozenset({"done", "closed", "resolved"})
_OWNER_WORDS = frozenset({"me", "none"})  # reserved: they win over a person of that name


@dataclass(frozen=True, slots=True)
class Tag:
    """One maildaemon tag of a subject.

    ``value``: owner -> roster name, ``"me"`` or ``"none"``; stage/client -> the configured
    spelling; due -> the value as written (lower-cased); ref -> the task number; close/ack ->
    None. An unknown NAME/STAGE/CLIENT or a bad due value gives ``known=False`` and the
    lower-cased text as ``value``. ``key`` is what tags are compared by between a message and its
    parent (``[@alice]``, ``[owner:Alice]``, ``[owner:alice@example.com]`` -> ``"owner:alice"``).
    """

    kind: TagKind
    value: str | None
    raw: str
    known: bool
    key: str


def parse_due(value: str) -> date | BusinessDuration | None:
    """``"2026-12-01"`` -> a date; ``"3d"``, ``"4h"``, ``"90m"``, ``"1w"`` -> business time."""
    text = value.strip()
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    try:
        return parse_business_duration(text.lower())
    except ValueError:
        return None


def _tag(inner: str, raw: str, config: Config) -> Tag:
    """The meaning of one tag; ``inner`` is subject_tags' lower-cased, whitespace-trimmed text."""
    if inner in _CLOSE:
        return Tag("close", None, raw, True, "close")
    if inner == "ack":
        return Tag("ack", None, raw, True, "ack")
    if inner.startswith("#"):
        return Tag("ref", inner[1:], raw, True, f"ref:{inner[1:]}")
    if inner.startswith("@"):
        kind, text = "owner", inner[1:]
    else:
        kind, _, text = inner.partition(":")
    name: str | None
    if kind == "owner":
        person = None if text in _OWNER_WORDS else config.resolve_person(text)
        name = text if text in _OWNER_WORDS else person.name if person else None
        return _named("owner", name, text, raw)
    if kind == "stage":
        name = next((s for s in config.stages if s.lower() == text), None)
        return _named("stage", name, text, raw)
    if kind == "client":
        client = config.client_by_name(text)
        return _named("client", client.name if client else None, text, raw)
    due = parse_due(text)
    key = text if due is None else due.isoformat() if isinstance(due, date) else str(due)
    return Tag("due", text, raw, due is not None, f"due:{key}")


def _named(kind: TagKind, name: str | None, text: str, raw: str) -> Tag:
    if name is None:
        return Tag(kind, text, raw, False, f"{kind}:{text}")
    return Tag(kind, name, raw, True, f"{kind}:{name.lower()}")


def parse_tags(subject: str, config: Config) -> tuple[Tag, ...]:
    """Every maildaemon tag of ``subject``, left to right, as written; other brackets skipped."""
    tags: list[Tag] = []
    for m in _GROUP.finditer(subject):
        tags.extend(_tag(inner, m.group(0), config) for inner in subject_tags(m.group(0)))
    return tuple(tags)


def new_tags(subject: str, parent_subject: str | None, config: Config) -> tuple[Tag, ...]:
    """The tags of ``subject`` whose key is not among the parent's; all of them with no parent.

    A tag copied along by "Re:" is not a repeated command (SPEC 6.1).
    """
    tags = parse_tags(subject, config)
    if parent_subject is None:
        return tags
    seen = {t.key for t in parse_tags(parent_subject, config)}
    return tuple(t for t in tags if t.key not in seen)
