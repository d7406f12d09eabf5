"""The real corpus through the whole ingest path (SPEC 5, 11): threads as notmuch makes them,
and no message of any corpus stops an import. Reads ../shared/corpus at run time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maildaemon import sources
from maildaemon.config import parse_config
from maildaemon.ingest import import_paths
from maildaemon.store import Store

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# Ids with or without angle brackets, separated by blanks or commas (as Outlook writes).
_ID = re.compile(rb"<?([^<>\s,]+@[^<>\s,]+?)>?(?=[\s,]|$)")


def _import(tmp_path: Path, name: str, source: Path, fallback: bool) -> Store:
    config = parse_config(f"[threading]\nsubject_fallback = {'true' if fallback else 'false'}\n")
    store = Store(tmp_path / f"{name}.db")
    import_paths(store, config, [source], inbox="corpus", now=NOW)
    return store


@pytest.fixture(scope="module")
def ext4(unpacked_corpus) -> Path:
    return unpacked_corpus("linux-ext4-10k.maildir.tar.xz") / "linux-ext4-10k"


def _tasks_by_message(store: Store) -> dict[str, int]:
    return dict(store.conn.execute("SELECT message_id, task_id FROM messages").fetchall())


def test_list_corpus_threads_exactly_as_connected_components(tmp_path, ext4):
    store = _import(tmp_path, "headers", ext4, fallback=False)
    threads = store.conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    assert threads == 1172  # notmuch's count for this corpus
    assert store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 9995
    assert (
        store.conn.execute("SELECT COUNT(*) FROM messages WHERE task_id IS NULL").fetchone()[0] == 0
    )
    # Threads made only of auto messages are not tasks; every other thread is.
    not_tasks = store.conn.execute(
        "SELECT COUNT(*) FROM tasks t WHERE NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.task_id = t.id AND m.kind != 'auto')"
    ).fetchone()[0]
    tasks = store.conn.execute("SELECT COUNT(*) FROM tasks WHERE is_task = 1").fetchone()[0]
    assert tasks == threads - not_tasks
    # An independent check: ids found by a plain regex over the raw headers, unioned.
    parent: dict[bytes, bytes] = {}

    def find(x: bytes) -> bytes:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    # A later copy of a Message-ID (in file-name order) replaces the earlier one's links.
    links: dict[bytes, list[bytes]] = {}
    for f in sorted((ext4 / "cur").iterdir()):
        head = f.read_bytes().split(b"\n\n", 1)[0]
        fields = re.findall(
            rb"^(message-id|in-reply-to|references):(.*(?:\n[ \t].*)*)", head, re.I | re.M
        )
        mids = [i for k, v in fields if k.lower() == b"message-id" for i in _ID.findall(v)]
        if mids:
            links[mids[0]] = [
                i for k, v in fields if k.lower() != b"message-id" for i in _ID.findall(v)
            ]
    own = {f"<{me.decode('utf-8', 'replace')}>": me for me in links}
    for me, targets in links.items():
        find(me)
        for i in targets:
            parent[find(i)] = find(me)
    stored = _tasks_by_message(store)
    comps: dict[bytes, set[int]] = {}
    for mid, task in stored.items():
        raw = own.get(mid)
        if raw is not None:
            comps.setdefault(find(raw), set()).add(task)
    assert all(len(tasks) == 1 for tasks in comps.values()), "a component was split"
    assert len(comps) == threads, "components were fused"
    store.close()


def test_subject_fallback_never_splits_header_linked_messages(tmp_path, ext4):
    strict = _import(tmp_path, "strict", ext4, fallback=False)
    loose = _import(tmp_path, "loose", ext4, fallback=True)
    a, b = _tasks_by_message(strict), _tasks_by_message(loose)
    assert a.keys() == b.keys()
    together: dict[int, set[int]] = {}
    for mid, task in a.items():
        together.setdefault(task, set()).add(b[mid])
    assert all(len(v) == 1 for v in together.values())
    strict.close()
    loose.close()


@pytest.mark.parametrize("tarball", ["spamassassin-public-corpus.tar.xz", "tricky-mail.tar.xz"])
def test_hostile_corpus_imports_without_an_escaping_exception(tmp_path, unpacked_corpus, tarball):
    folder = unpacked_corpus(tarball)
    store = _import(tmp_path, "hostile", folder, fallback=True)
    located = store.conn.execute("SELECT COUNT(*) FROM locations").fetchone()[0]
    quarantined = store.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
    # Nothing lost: every distinct message found (identical files share a key) is stored
    # (a location) or quarantined with a reason.
    found = len({item.key for item in sources.items(folder, set())})
    assert located + quarantined == found
    assert located > found * 0.9
    reasons = [r[0] for r in store.conn.execute("SELECT reason FROM quarantine")]
    assert all(r and "parser error" not in r for r in reasons), reasons[:5]
    store.close()
