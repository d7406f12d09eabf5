"""Ingest: local sources -> parsed messages -> the store, then threads and tasks re-derived.

Parsing runs in worker processes when there is enough mail to pay for them (it is the
costly step); the parent only stores. Each batch of messages is committed together with
the source's progress, so an interrupted import resumes without losing or repeating mail.
One bad message never stops a sync: it is stored with its defects or quarantined.
"""

from __future__ import annotations

import copyreg
import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from maildaemon import ledger, sources
from maildaemon.config import Config, Inbox
from maildaemon.coordination import TaskState, derive
from maildaemon.errors import ParseError, UserError
from maildaemon.model import Address, Attachment, Message
from maildaemon.parsers import parse_message
from maildaemon.parsers.message import strip_from_line
from maildaemon.rows import DerivedWrites
from maildaemon.store import Store
from maildaemon.threads import Thread

log = logging.getLogger(__name__)


def _pickle_by_fields(cls: type) -> None:
    """Pickle ``cls`` (a frozen dataclass with slots) as its constructor's arguments: its
    default pickling goes through Python-level ``__getstate__``/``__setstate__``, which is
    twice as slow, and every parsed message crosses from a worker to the parent."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def reduce(obj: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, tuple([getattr(obj, name) for name in names])

    copyreg.pickle(cls, reduce)


for _model in (Address, Attachment, Message):
    _pickle_by_fields(_model)

BATCH = 500
POOL_THRESHOLD = 200  # fewer messages than this parse in-process: no pool start-up cost

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SyncResult:
    inbox: str
    source: str
    seen: int
    new: int
    quarantined: int
    error: str | None = None
    # The new messages, without their text: re-derivation takes them from here instead
    # of reading them back from the database.
    fresh: dict[str, Message] = field(default_factory=dict, repr=False, compare=False)
    # Message-IDs already stored that this pass found in this inbox too (a Cc to two shared
    # addresses): no new message, but their task now lists one more inbox.
    located: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)


# (key, message or None, quarantine reason or None, size); message and reason both None:
# the file vanished between listing and reading (a mail client renamed it): next pass.
Parsed = tuple[str, Message | None, str | None, int]

_text_cap = 16384


def _init_worker(text_cap: int) -> None:
    global _text_cap
    _text_cap = text_cap


def parse_item(item: sources.Item, text_cap: int | None = None) -> Parsed:
    """Read and parse one item; every failure becomes a quarantine reason."""
    try:
        raw = item.read()
    except FileNotFoundError:
        return item.key, None, None, 0
    except OSError as e:
        return item.key, None, f"unreadable: {e.strerror or e}", 0
    try:
        msg = parse_message(
            strip_from_line(raw),
            received_at=item.received_at,
            text_cap=_text_cap if text_cap is None else text_cap,
        )
    except ParseError as e:
        return item.key, None, str(e), len(raw)
    except Exception as e:  # a parser bug must not stop the sync: quarantine and go on
        log.exception("parser failed on %s", item.path)
        return item.key, None, f"parser error: {type(e).__name__}: {e}", len(raw)
    return item.key, msg, None, len(raw)


def _parse_all(items: list[sources.Item], text_cap: int, workers: int | None) -> Iterator[Parsed]:
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(items) < POOL_THRESHOLD:
        for item in items:
            yield parse_item(item, text_cap)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(text_cap,)) as pool:
        yield from pool.imap(parse_item, items, chunksize=32)


def ingest_items(
    store: Store,
    items: Iterable[sources.Item],
    *,
    inbox: str,
    source: str,
    shared: bool,
    text_cap: int,
    now: datetime,
    progress: Progress | None = None,
    workers: int | None = None,
) -> SyncResult:
    """Parse and store ``items`` in batches, each batch with the source's progress."""
    todo = list(items)
    seen = quarantined = 0
    batch: list[tuple[str, Message]] = []
    bad: list[tuple[str, str, int]] = []
    fresh: dict[str, Message] = {}
    located: set[str] = set()

    def flush() -> None:
        if batch or bad:
            added = set(
                store.add_batch(
                    inbox, source, shared=shared, items=batch, quarantined=bad, seen_at=now
                )
            )
            for _, m in batch:
                if m.message_id in added:
                    fresh[m.message_id] = replace(m, text="", reply_text="")
                else:
                    located.add(m.message_id)
            batch.clear()
            bad.clear()

    for key, msg, reason, size in _parse_all(todo, text_cap, workers):
        seen += 1
        if msg is not None:
            batch.append((key, msg))
        elif reason is not None:
            quarantined += 1
            log.warning("inbox %s: quarantined %s: %s", inbox, key, reason)
            bad.append((key, reason, size))
        if len(batch) + len(bad) >= BATCH:
            flush()
        if progress is not None:
            progress(1)
    flush()
    store.record_sync(inbox, source, at=now)
    return SyncResult(
        inbox, source, seen, len(fresh), quarantined, fresh=fresh, located=frozenset(located)
    )


def pending_items(store: Store, inbox: str, path: Path) -> tuple[str, list[sources.Item]]:
    """The items of a local source the store does not have yet, and the source's name."""
    source = str(path.resolve())
    return source, list(sources.items(path, store.known_keys(inbox, source)))


def import_paths(
    store: Store,
    config: Config,
    paths: Iterable[Path],
    *,
    inbox: str,
    now: datetime,
    progress_factory: Callable[[int], Progress | None] | None = None,
    workers: int | None = None,
) -> list[SyncResult]:
    """Backfill from Maildir folders, mbox files and .eml files, then re-derive tasks."""
    configured = config.inbox_by_name(inbox)
    shared = configured.role != "sent" if configured is not None else True
    results = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        source, todo = pending_items(store, inbox, path)
        progress = progress_factory(len(todo)) if progress_factory and todo else None
        results.append(
            ingest_items(
                store,
                todo,
                inbox=inbox,
                source=source,
                shared=shared,
                text_cap=config.ingest.text_cap,
                now=now,
                progress=progress,
                workers=workers,
            )
        )
    if any(r.new or r.located for r in results):
        rederive(store, config, now, fresh=merge_fresh(results), located=merge_located(results))
    return results


def merge_fresh(results: Iterable[SyncResult]) -> dict[str, Message]:
    fresh: dict[str, Message] = {}
    for r in results:
        fresh.update(r.fresh)
    return fresh


def merge_located(results: Iterable[SyncResult]) -> frozenset[str]:
    return frozenset().union(*(r.located for r in results))


def sync_local(
    store: Store,
    config: Config,
    inbox: Inbox,
    *,
    now: datetime,
    progress_factory: Callable[[int], Progress | None] | None = None,
) -> SyncResult:
    """One pass over a Maildir or mbox inbox from the config (without re-deriving)."""
    assert inbox.path is not None
    if not inbox.path.exists():
        error = f"{inbox.path}: no such {inbox.kind}"
        store.record_sync(inbox.name, str(inbox.path.resolve()), at=now, error=error)
        return SyncResult(inbox.name, str(inbox.path), 0, 0, 0, error)
    source, todo = pending_items(store, inbox.name, inbox.path)
    progress = progress_factory(len(todo)) if progress_factory and todo else None
    return ingest_items(
        store,
        todo,
        inbox=inbox.name,
        source=source,
        shared=inbox.role != "sent",
        text_cap=config.ingest.text_cap,
        now=now,
        progress=progress,
    )


def rederive(
    store: Store,
    config: Config,
    now: datetime,
    fresh: dict[str, Message] | None = None,
    located: Iterable[str] = (),
) -> ledger.Plan:
    """Re-thread every message and re-derive the tasks that changed (every task when
    ``fresh`` is None): those of new messages (``fresh``) and of known messages seen in
    another inbox (``located``); write only what changed."""
    stored, rows = store.load_stored(fresh)
    result = ledger.plan(
        stored,
        rows,
        store.task_row_values(),
        store.task_roots(),
        store.aliases(),
        config,
        now,
        store.commands(),
        store.repairs(),
        touched=frozenset(fresh).union(located) if fresh is not None else None,
    )
    if result.writes:
        store.write_derived(result.writes)
    return result


def refresh_task(store: Store, config: Config, task_id: int, now: datetime) -> TaskState | None:
    """Re-derive one task after a command on it (its thread is unchanged)."""
    loaded = store.load_thread(task_id)
    if not loaded:
        return None
    stored = {s.message.message_id: s for s, _ in loaded}
    thread = Thread(tuple(stored), tuple(joined for _, joined in loaded))
    state = derive(thread, stored, config, now, store.commands(task_id).get(task_id, []))
    if state is not None:
        writes = DerivedWrites(
            [],
            [(task_id, ledger.task_values(state, ledger.derivation_fingerprint(config)))],
            [],
            [],
            [],
        )
        writes.derived[task_id] = ledger.derived_rows(state)
        store.write_derived(writes)
    return state
