"""The store: the only module that writes SQL.

SQLite through sqlite-utils, schema from the numbered files in ``migrations/`` (shipped in
the package as ``maildaemon.migrations``), WAL, a 30 s busy timeout, ``synchronous=NORMAL``.
Write transactions begin IMMEDIATE so the daemon and the CLI never meet "database is locked".
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from maildaemon.errors import OperationError, UserError
from maildaemon.model import Message, Stored
from maildaemon.ownership import Command
from maildaemon.rows import (
    INSERT_MESSAGE,
    META_COLUMNS,
    REPLACE_SET,
    REPLACED_COLUMNS,
    TASK_COLUMNS,
    TASK_JSON,
    DerivedWrites,
    Row,
    iso,
    message_values,
    parse_iso,
    row_message,
)

BUSY_TIMEOUT_S = 30.0


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files("maildaemon.migrations")
    files = sorted(
        (f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql")
    )
    if not files:
        raise OperationError("no migrations found in the installed package")
    return files


def _migrations() -> Migrations:
    migrations = Migrations("maildaemon")
    for name, sql in migration_files():

        def step(db: sqlite_utils.Database, sql: str = sql) -> None:
            db.executescript(sql)

        migrations(name=name.removesuffix(".sql"))(step)
    return migrations


class Store:
    """One open database."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
            self.db = sqlite_utils.Database(self.conn)
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._enable_wal()
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise OperationError(f"database {path}: {e}") from e

    def _enable_wal(self) -> None:
        """WAL mode. Switching a new file to it needs an exclusive lock, and SQLite answers
        "database is locked" at once instead of waiting (the busy timeout does not apply):
        retry while another connection creates the same database."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        """Apply pending migrations. The daemon's threads and CLI commands may open a new
        database at once: the first takes the write lock and applies them, the others wait
        (busy timeout) and then find nothing pending. No lock when nothing is pending."""
        migrations = _migrations()
        if not migrations.pending(self.db):
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(self.db)  # nested: each step is a savepoint of this transaction
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it commits, or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()

    # -- ingest ---------------------------------------------------------------------------

    def known_keys(self, inbox: str, source: str) -> set[str]:
        """Keys of a source already stored or quarantined: what a sync can skip."""
        rows = self.conn.execute(
            "SELECT key FROM locations WHERE inbox = ? AND source = ? "
            "UNION ALL SELECT key FROM quarantine WHERE inbox = ? AND source = ?",
            (inbox, source, inbox, source),
        )
        return {r[0] for r in rows}

    def source_state(self, inbox: str, source: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM sources WHERE inbox = ? AND source = ?", (inbox, source))
        return dict(rows[0]) if rows else None

    def add_batch(
        self,
        inbox: str,
        source: str,
        *,
        shared: bool,
        items: Sequence[tuple[str, Message]],
        quarantined: Sequence[tuple[str, str, int]],
        seen_at: datetime,
        progress: dict[str, Any] | None = None,
        coordinates: Mapping[str, tuple[int, int]] | None = None,
    ) -> list[str]:
        """Store one batch and the source's progress in one transaction.

        Returns the Message-IDs that were new, or replaced: a copy of a stored Message-ID
        that arrives with other threading headers (re-sent to start a new thread, say)
        replaces the stored headers, so the later delivery decides where it belongs.

        A Message-ID already stored (another inbox, a duplicate delivery) adds only a location.

        ``coordinates`` maps keys to IMAP (uidvalidity, uid): they go into the locations, and
        a message seen again under another UIDVALIDITY of the same folder is moved to its new
        coordinates instead of being listed twice.
        """
        seen = iso(seen_at)
        latest: dict[str, Message] = {}  # the last copy of each Message-ID in the batch
        for _, m in items:
            latest[m.message_id] = m
        with self.write() as c:
            existing = {
                mid: (rowid, (irt, refs))
                for rowid, mid, irt, refs in c.execute(
                    "SELECT id, message_id, in_reply_to, refs "
                    "FROM messages WHERE message_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(latest)),),
                )
            }
            inserts = [m for mid, m in latest.items() if mid not in existing]
            # A copy re-sent with other threading headers replaces the stored one.
            replaced = [
                (m, existing[mid][0])
                for mid, m in latest.items()
                if mid in existing
                and existing[mid][1] != (json.dumps(m.in_reply_to), json.dumps(m.references))
            ]
            c.executemany(INSERT_MESSAGE, [message_values(m, seen, shared) for m in inserts])
            c.executemany(
                f"UPDATE messages SET {REPLACE_SET} WHERE id = ?",
                [
                    (*message_values(m, seen, shared)[:REPLACED_COLUMNS], rowid)
                    for m, rowid in replaced
                ],
            )
            rowids = {mid: rowid for mid, (rowid, _) in existing.items()}
            if inserts:
                rowids.update(
                    (mid, rowid)
                    for rowid, mid in c.execute(
                        "SELECT id, message_id FROM messages "
                        "WHERE message_id IN (SELECT value FROM json_each(?))",
                        (json.dumps([m.message_id for m in inserts]),),
                    )
                )
            c.executemany(
                "INSERT OR REPLACE INTO bodies (message, text, reply_text) VALUES (?, ?, ?)",
                [
                    (rowids[m.message_id], m.text, m.reply_text)
                    for m in (*inserts, *(m for m, _ in replaced))
                ],
            )
            if shared:
                c.executemany(
                    "UPDATE messages SET shared = 1 WHERE id = ? AND shared = 0",
                    [(rowid,) for rowid, _ in existing.values()],
                )
            if coordinates:
                c.executemany(
                    "DELETE FROM locations WHERE message = ? AND inbox = ? AND source = ? "
                    "AND uidvalidity IS NOT NULL AND uidvalidity != ?",
                    [
                        (rowids[m.message_id], inbox, source, coordinates[key][0])
                        for key, m in items
                        if key in coordinates
                    ],
                )
            where = coordinates or {}
            c.executemany(
                "INSERT OR IGNORE INTO locations "
                "(message, inbox, source, key, uidvalidity, uid, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (rowids[m.message_id], inbox, source, key, *where.get(key, (None, None)), seen)
                    for key, m in items
                ],
            )
            for key, reason, size in quarantined:
                c.execute(
                    "INSERT OR IGNORE INTO quarantine (inbox, source, key, reason, size, seen_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (inbox, source, key, reason, size, seen),
                )
            fields = dict(progress or {})
            fields["messages"] = len(items)
            self._upsert_source(c, inbox, source, fields, add_messages=True)
        return [m.message_id for m in inserts] + [m.message_id for m, _ in replaced]

    def reset_source(self, inbox: str, source: str, uidvalidity: int) -> None:
        """An IMAP folder's UIDVALIDITY changed: its progress starts again under the new
        one (messages and their locations stay; they are matched by Message-ID as the
        folder is read again), and what it quarantined is forgotten (read again too)."""
        with self.write() as c:
            self._upsert_source(
                c,
                inbox,
                source,
                {"uidvalidity": uidvalidity, "last_uid": None, "highestmodseq": None},
            )
            c.execute(
                "UPDATE sources SET messages = 0 WHERE inbox = ? AND source = ?", (inbox, source)
            )
            c.execute("DELETE FROM quarantine WHERE inbox = ? AND source = ?", (inbox, source))

    def record_sync(
        self, inbox: str, source: str, *, at: datetime, error: str | None = None
    ) -> None:
        """A finished pass over a source: success time, or the error and when."""
        fields: dict[str, Any] = (
            {"last_sync_at": iso(at), "last_error": None}
            if error is None
            else {"last_error": error, "last_error_at": iso(at)}
        )
        with self.write() as c:
            self._upsert_source(c, inbox, source, fields)

    def clear_inbox_errors(self, inbox: str) -> None:
        """A pass over ``inbox`` succeeded: the errors its sources recorded are history
        (whatever source name the failing pass recorded them under)."""
        failing = self.conn.execute(
            "SELECT 1 FROM sources WHERE inbox = ? AND last_error IS NOT NULL", (inbox,)
        ).fetchone()
        if failing:
            with self.write() as c:
                c.execute("UPDATE sources SET last_error = NULL WHERE inbox = ?", (inbox,))

    def drop_closed_bodies(self, closed_before: datetime) -> int:
        """Retention (SPEC 11): drop the stored text of every message of tasks closed
        before ``closed_before``; messages, headers, events and clocks stay. Returns how
        many bodies were dropped."""
        with self.write() as c:
            cur = c.execute(
                "DELETE FROM bodies WHERE message IN ("
                " SELECT m.id FROM messages m JOIN tasks t ON t.id = m.task_id"
                " WHERE t.status = 'closed' AND COALESCE("
                "  (SELECT MAX(e.at) FROM events e WHERE e.task_id = t.id AND e.kind = 'close'),"
                "  t.last_activity_at) < ?)",
                (iso(closed_before),),
            )
            return cur.rowcount

    @staticmethod
    def _upsert_source(
        c: sqlite3.Connection,
        inbox: str,
        source: str,
        fields: dict[str, Any],
        add_messages: bool = False,
    ) -> None:
        c.execute("INSERT OR IGNORE INTO sources (inbox, source) VALUES (?, ?)", (inbox, source))
        if add_messages:
            c.execute(
                "UPDATE sources SET messages = messages + ? WHERE inbox = ? AND source = ?",
                (fields.pop("messages"), inbox, source),
            )
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            c.execute(
                f"UPDATE sources SET {sets} WHERE inbox = ? AND source = ?",
                (*fields.values(), inbox, source),
            )

    # -- threading and derived state ------------------------------------------------------

    def load_stored(
        self, fresh: dict[str, Message] | None = None
    ) -> tuple[list[Stored], dict[str, Row]]:
        """Every message as the rules see it (no text), and its current derived columns.

        ``fresh`` holds messages this process just parsed and stored: they are taken as
        they are instead of being decoded again from their rows.
        """
        fresh = fresh or {}
        inboxes: dict[int, list[str]] = {}
        for mid, inbox in self.conn.execute("SELECT message, inbox FROM locations"):
            lst = inboxes.setdefault(mid, [])
            if inbox not in lst:
                lst.append(inbox)
        stored: list[Stored] = []
        rows: dict[str, Row] = {}
        for r in self.conn.execute(
            "SELECT id, message_id, seen_at, shared, task_id, joined_by, kind, effective_at "
            "FROM messages"
        ):
            rowid, mid, seen_at, shared, task_id, joined_by, kind, effective_at = r
            rows[mid] = Row(task_id, joined_by, kind, effective_at)
            m = fresh.get(mid)
            if m is None:
                continue
            stored.append(
                Stored(
                    message=m,
                    seen_at=parse_iso(seen_at),  # type: ignore[arg-type]
                    inboxes=tuple(sorted(inboxes.get(rowid, ()))),
                    shared=bool(shared),
                    prior_task=task_id,
                )
            )
        old = [mid for mid in rows if mid not in fresh]
        if old:
            for r in self.query(
                f"SELECT {META_COLUMNS} FROM messages WHERE message_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(old),),
            ):
                stored.append(
                    Stored(
                        message=row_message(r),
                        seen_at=parse_iso(r["seen_at"]),  # type: ignore[arg-type]
                        inboxes=tuple(sorted(inboxes.get(r["id"], ()))),
                        shared=bool(r["shared"]),
                        prior_task=r["task_id"],
                    )
                )
        return stored, rows

    def load_thread(self, task_id: int) -> list[tuple[Stored, str]]:
        """A task's messages (with text) and why each joined, in stored order."""
        inboxes: dict[int, list[str]] = {}
        for mid, inbox in self.conn.execute(
            "SELECT l.message, l.inbox FROM locations l JOIN messages m ON m.id = l.message "
            "WHERE m.task_id = ? ORDER BY l.inbox",
            (task_id,),
        ):
            inboxes.setdefault(mid, []).append(inbox)
        out = []
        for r in self.query(
            f"SELECT {META_COLUMNS}, b.text, b.reply_text FROM messages "
            "LEFT JOIN bodies b ON b.message = messages.id WHERE task_id = ? "
            "ORDER BY effective_at, seen_at, message_id",
            (task_id,),
        ):
            s = Stored(
                message=row_message(r, with_text=True),
                seen_at=parse_iso(r["seen_at"]),  # type: ignore[arg-type]
                inboxes=tuple(dict.fromkeys(inboxes.get(r["id"], ()))),
                shared=bool(r["shared"]),
                prior_task=r["task_id"],
            )
            out.append((s, r["joined_by"] or "root"))
        return out

    def task_roots(self) -> dict[int, tuple[str, str]]:
        """Each task's (opened_at, root Message-ID): what keeps task ids stable."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute("SELECT id, opened_at, root_message_id FROM tasks")
        }

    def aliases(self) -> dict[int, int]:
        return dict(self.conn.execute("SELECT old_id, task_id FROM task_aliases").fetchall())

    def task_row_values(self) -> dict[int, tuple[Any, ...]]:
        return {
            r[0]: tuple(r[1:])
            for r in self.conn.execute(f"SELECT id, {', '.join(TASK_COLUMNS)} FROM tasks")
        }

    def write_derived(self, plan: DerivedWrites) -> None:
        """Apply one re-derivation in one transaction (only what changed is in ``plan``)."""
        with self.write() as c:
            ids: dict[int, int] = {}
            for placeholder, values in plan.new_tasks:
                cols = ", ".join(TASK_COLUMNS)
                marks = ", ".join("?" for _ in TASK_COLUMNS)
                cur = c.execute(f"INSERT INTO tasks ({cols}) VALUES ({marks})", values)
                assert cur.lastrowid is not None
                ids[placeholder] = cur.lastrowid
            sets = ", ".join(f"{col} = ?" for col in TASK_COLUMNS)
            c.executemany(
                f"UPDATE tasks SET {sets} WHERE id = ?",
                [(*values, task_id) for task_id, values in plan.changed_tasks],
            )
            c.executemany(
                "UPDATE messages SET task_id = ?, joined_by = ?, kind = ?, effective_at = ? "
                "WHERE message_id = ?",
                [
                    (ids.get(t, t) if t is not None and t < 0 else t, j, k, e, mid)
                    for mid, (t, j, k, e) in plan.message_rows
                ],
            )
            for old, new, at in plan.aliases:
                new_id = ids.get(new, new)
                c.execute(
                    "INSERT OR REPLACE INTO task_aliases (old_id, task_id, at) VALUES (?, ?, ?)",
                    (old, new_id, at),
                )
                c.execute("UPDATE task_aliases SET task_id = ? WHERE task_id = ?", (new_id, old))
                c.execute("UPDATE events SET task_id = ? WHERE task_id = ?", (new_id, old))
                c.execute("UPDATE commands SET task_id = ? WHERE task_id = ?", (new_id, old))
                c.execute("DELETE FROM clocks WHERE task_id = ?", (old,))
                c.execute("DELETE FROM events WHERE task_id = ? AND derived = 1", (new_id,))
                c.execute("DELETE FROM tasks WHERE id = ?", (old,))
            for task, at, kind, rule, message_id, detail in plan.events:
                c.execute(
                    "INSERT INTO events (task_id, at, kind, rule, message_id, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (ids.get(task, task), at, kind, rule, message_id, detail),
                )
            for task, (events, task_clocks) in plan.derived.items():
                task_id = ids.get(task, task)
                c.execute("DELETE FROM events WHERE task_id = ? AND derived = 1", (task_id,))
                c.execute("DELETE FROM clocks WHERE task_id = ?", (task_id,))
                c.executemany(
                    "INSERT INTO events (task_id, at, kind, rule, owner_from, owner_to, "
                    "message_id, actor, detail, derived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    [(task_id, *e) for e in events],
                )
                c.executemany(
                    "INSERT INTO clocks (task_id, kind, started_at, due_at, stopped_at, outcome, "
                    "detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(task_id, *k) for k in task_clocks],
                )

    # -- reading --------------------------------------------------------------------------

    def resolve_task(self, token: str) -> int | None:
        """A task id, a merged-away id, or any Message-ID in the thread -> the task id."""
        token = token.strip()
        if token.lstrip("#").isdigit():
            n = int(token.lstrip("#"))
            if self.conn.execute("SELECT 1 FROM tasks WHERE id = ?", (n,)).fetchone():
                return n
            row = self.conn.execute("SELECT task_id FROM task_aliases WHERE old_id = ?", (n,))
            found = row.fetchone()
            return int(found[0]) if found else None
        mid = token if token.startswith("<") else f"<{token}>"
        row = self.conn.execute("SELECT task_id FROM messages WHERE message_id = ?", (mid,))
        found = row.fetchone()
        return int(found[0]) if found and found[0] is not None else None

    def events_for(self, task_id: int) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.query(
                "SELECT * FROM events WHERE task_id = ? ORDER BY at, id", (task_id,)
            )
        ]

    def add_command(self, task_id: int, command: Command) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO commands (task_id, at, actor, verb, arg, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, iso(command.at), command.actor, command.verb, command.arg, command.note),
            )

    def commands(self, task_id: int | None = None) -> dict[int, list[Command]]:
        """The CLI commands given on each task (or on one), in the order given."""
        sql = "SELECT task_id, at, actor, verb, arg, note FROM commands"
        params: tuple[Any, ...] = ()
        if task_id is not None:
            sql += " WHERE task_id = ?"
            params = (task_id,)
        out: dict[int, list[Command]] = {}
        for task, at, actor, verb, arg, note in self.conn.execute(sql + " ORDER BY at, id", params):
            out.setdefault(task, []).append(
                Command(parse_iso(at), actor, verb, arg, note)  # type: ignore[arg-type]
            )
        return out

    def add_repair(
        self, kind: str, message_id: str, other_id: str | None, at: datetime, actor: str
    ) -> None:
        """Record a manager's `merge` or `split`; threading applies it from now on."""
        with self.write() as c:
            c.execute(
                "INSERT INTO thread_repairs (kind, message_id, other_id, at, actor) "
                "VALUES (?, ?, ?, ?, ?)",
                (kind, message_id, other_id, iso(at), actor),
            )

    def repairs(self) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
        """(merges as message-id pairs, split message ids), in the order given."""
        merges: list[tuple[str, str]] = []
        splits: set[str] = set()
        for kind, mid, other in self.conn.execute(
            "SELECT kind, message_id, other_id FROM thread_repairs ORDER BY id"
        ):
            if kind == "merge" and other:
                merges.append((mid, other))
                splits.discard(mid)
                splits.discard(other)
            elif kind == "split":
                splits.add(mid)
        return tuple(merges), frozenset(splits)

    def task_rows(self, statuses: Iterable[str] | None = None) -> list[sqlite3.Row]:
        """Stored tasks (threads that are not tasks left out), optionally of some statuses."""
        if statuses is None:
            return self.query("SELECT * FROM tasks WHERE is_task = 1")
        wanted = json.dumps(sorted(statuses))
        return self.query(
            "SELECT * FROM tasks WHERE is_task = 1 AND status IN (SELECT value FROM json_each(?))",
            (wanted,),
        )

    def task_json(
        self,
        now: datetime,
        unavailable: Mapping[str, str],
        roster: Sequence[str],
        statuses: Iterable[str] | None = None,
    ) -> list[tuple[int, str]]:
        """Stored tasks as the JSON objects of SPEC 10, built by SQLite, most urgent first.

        ``unavailable`` maps owners who are inactive or away without cover (as of ``now``)
        to the reason; owners not on ``roster`` count as inactive. Stored times are
        fixed-width UTC strings, so they compare as text. This is what keeps `tasks --json`
        on 100,000 tasks within a second.
        """
        where = "is_task = 1"
        params: dict[str, Any] = {
            "now": iso(now),
            "reasons": json.dumps(dict(unavailable)),
            "roster": json.dumps(list(roster)),
        }
        if statuses is not None:
            where += " AND status IN (SELECT value FROM json_each(:statuses))"
            params["statuses"] = json.dumps(sorted(statuses))
        return self.conn.execute(
            f"SELECT id, json_object({TASK_JSON}) FROM tasks WHERE {where} "
            "ORDER BY (due_at IS NOT NULL AND status != 'closed' AND :now > due_at) DESC, "
            "due_at IS NULL, due_at, last_activity_at, id",
            params,
        ).fetchall()

    def tasks_active_after(self, moment: datetime) -> set[int]:
        """Tasks with a message after ``moment``: their stored state is newer than it."""
        rows = self.conn.execute(
            "SELECT task_id FROM messages WHERE task_id IS NOT NULL "
            "GROUP BY task_id HAVING MAX(effective_at) > ? "
            "UNION SELECT task_id FROM commands WHERE at > ?",
            (iso(moment), iso(moment)),
        )
        return {r[0] for r in rows}

    def message_ids_by_task(self, until: datetime) -> dict[int, list[str]]:
        """Every task's Message-IDs up to ``until``, in timeline order."""
        out: dict[int, list[str]] = {}
        for task_id, mid in self.conn.execute(
            "SELECT task_id, message_id FROM messages "
            "WHERE task_id IS NOT NULL AND effective_at <= ? "
            "ORDER BY effective_at, seen_at, message_id",
            (iso(until),),
        ):
            out.setdefault(task_id, []).append(mid)
        return out

    def source_rows(self) -> list[dict[str, Any]]:
        """Every source's sync state (last sync, last error), by inbox."""
        return [dict(r) for r in self.query("SELECT * FROM sources ORDER BY inbox, source")]

    def status_report(self) -> dict[str, Any]:
        """Counts, per-source sync state and the newest quarantined mail, for `status`."""

        def count(sql: str) -> int:
            return int(self.conn.execute(sql).fetchone()[0])

        per_inbox = dict(
            self.conn.execute(
                "SELECT inbox, COUNT(DISTINCT message) FROM locations GROUP BY inbox"
            ).fetchall()
        )
        return {
            "database": str(self.path.resolve()),
            "database_bytes": self.size_bytes(),
            "messages": count("SELECT COUNT(*) FROM messages"),
            "messages_with_defects": count("SELECT COUNT(*) FROM messages WHERE defects != '[]'"),
            "threads": count("SELECT COUNT(*) FROM tasks"),
            "tasks": count("SELECT COUNT(*) FROM tasks WHERE is_task = 1"),
            "quarantined": count("SELECT COUNT(*) FROM quarantine"),
            "sources": self.source_rows(),
            "messages_per_inbox": per_inbox,
            "quarantine": [
                dict(r)
                for r in self.query(
                    "SELECT inbox, source, key, reason, size, seen_at FROM quarantine "
                    "ORDER BY id DESC LIMIT 50"
                )
            ],
        }

    def clock_rows(self, stopped_since: datetime | None = None) -> list[dict[str, Any]]:
        """The clocks of every task (threads that are no task have none) with the task's
        client, subject and owner; with ``stopped_since``, those stopped before it are left out."""
        sql = (
            "SELECT c.task_id, t.client, t.subject, t.owner, c.kind, c.started_at, c.due_at, "
            "c.stopped_at, c.outcome, c.detail FROM clocks c JOIN tasks t ON t.id = c.task_id "
            "WHERE t.is_task = 1"
        )
        params: tuple[Any, ...] = ()
        if stopped_since is not None:
            sql += " AND (c.stopped_at IS NULL OR c.stopped_at >= ?)"
            params = (iso(stopped_since),)
        return [dict(r) for r in self.query(sql + " ORDER BY c.task_id, c.started_at", params)]

    def clocks_by_task(self) -> dict[int, list[tuple[Any, ...]]]:
        """Each task's stored clocks as (kind, started_at, due_at, stopped_at, outcome,
        detail): the rows `ledger.derived_rows` makes, to compare a replay with."""
        out: dict[int, list[tuple[Any, ...]]] = {}
        for task_id, *clock in self.conn.execute(
            "SELECT task_id, kind, started_at, due_at, stopped_at, outcome, detail FROM clocks "
            "ORDER BY task_id, started_at, kind"
        ):
            out.setdefault(task_id, []).append(tuple(clock))
        return out

    def stale_tasks(self, fingerprint: str) -> int:
        """How many stored threads were derived under another config than ``fingerprint``
        (SPEC 11): `maildaemon recompute` brings them up to date."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE config_fingerprint IS NOT ?", (fingerprint,)
        ).fetchone()
        return int(row[0])

    def backup(self, dest: Path) -> int:
        """A consistent copy of the database into ``dest`` (which must not exist) while
        other connections keep writing: SQLite's online backup in one step, which reads
        one snapshot. In WAL mode a reader never blocks a writer, so the daemon goes on
        writing meanwhile (into the WAL) and the copy never restarts. The copy is left in
        rollback-journal mode, one self-contained file. Returns its size in bytes."""
        dest = Path(dest)
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UserError(f"{dest} exists; backup never overwrites a file") from None
        except OSError as e:
            raise OperationError(f"cannot create {dest}: {e.strerror or e}") from None
        os.close(fd)
        try:
            target = sqlite3.connect(str(dest), timeout=BUSY_TIMEOUT_S)
            try:
                self.conn.backup(target)
                target.execute("PRAGMA journal_mode = DELETE")
            finally:
                target.close()
        except BaseException as e:
            dest.unlink(missing_ok=True)
            if isinstance(e, sqlite3.Error):
                raise OperationError(f"backup to {dest} failed: {e}") from e
            raise
        return dest.stat().st_size

    def underived_messages(self) -> int:
        """How many stored messages are in no thread yet: a sync stored them and the
        process ended (killed, crashed) before it re-derived their tasks. A start must
        re-derive them, since the next pass does not see them as new."""
        row = self.conn.execute("SELECT COUNT(*) FROM messages WHERE task_id IS NULL").fetchone()
        return int(row[0])

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total
