"""Rows: how records become SQLite rows and back, and the SQL text that shapes them.

Part of the store (the only layer that talks SQL): column lists, value encoders for
`Message`, the decoder back, and the JSON the store builds for `tasks --json`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maildaemon.model import Address, Attachment, Message


def iso(dt: datetime | None) -> str | None:
    """Aware datetime -> ``2026-11-24T09:12:00Z``."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def addrs(value: Sequence[Address]) -> str:
    return json.dumps([[a.name, a.email] for a in value], ensure_ascii=False)


def load_addrs(value: str) -> tuple[Address, ...]:
    return tuple(Address(n, e) for n, e in json.loads(value))


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message's derived columns, to write only what changed."""

    task_id: int | None
    joined_by: str | None
    kind: str | None
    effective_at: str | None


# The message columns the rules read: everything but the text.
META_COLUMNS = (
    "id, message_id, synthetic_id, in_reply_to, refs, from_name, from_addr, to_addrs, "
    "cc_addrs, reply_to, date, date_is_fallback, seen_at, subject, base_subject, "
    "normalized_subject, is_forward, thread_index, auto_submitted, precedence, x_autoreply, "
    "list_id, attachments, defects, size, shared, task_id, joined_by, kind, effective_at"
)


TASK_COLUMNS = (
    "is_task",
    "root_message_id",
    "subject",
    "client",
    "owner",
    "stage",
    "status",
    "opened_at",
    "last_activity_at",
    "due_at",
    "orphaned",
    "message_count",
    "inboxes",
    "last_from",
    "config_fingerprint",
    "pending_from",
    "pending_to",
    "pending_at",
    "pending_due_at",
    "flag",
)


@dataclass(slots=True)
class DerivedWrites:
    """What a re-derivation changes. Negative task ids are placeholders for new tasks."""

    new_tasks: list[tuple[int, tuple[Any, ...]]]
    changed_tasks: list[tuple[int, tuple[Any, ...]]]
    message_rows: list[tuple[str, tuple[int | None, str | None, str | None, str | None]]]
    aliases: list[tuple[int, int, str]]
    events: list[tuple[int, str, str, str, str | None, str | None]]
    # Per task (placeholder ids too): its replayed events and its clocks, replacing the
    # stored ones. Event rows: (at, kind, rule, owner_from, owner_to, message_id, actor,
    # detail); clock rows: (kind, started_at, due_at, stopped_at, outcome, detail).
    derived: dict[int, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = field(
        default_factory=dict
    )

    def __bool__(self) -> bool:
        return bool(
            self.new_tasks
            or self.changed_tasks
            or self.message_rows
            or self.aliases
            or self.events
            or self.derived
        )


MESSAGE_COLUMNS = [
    "message_id",
    "synthetic_id",
    "in_reply_to",
    "refs",
    "from_name",
    "from_addr",
    "to_addrs",
    "cc_addrs",
    "reply_to",
    "date",
    "date_is_fallback",
    "subject",
    "base_subject",
    "normalized_subject",
    "is_forward",
    "thread_index",
    "auto_submitted",
    "precedence",
    "x_autoreply",
    "list_id",
    "attachments",
    "defects",
    "size",
    "seen_at",
    "shared",
]
ORPHAN_REASON = (
    "CASE WHEN flag IS NOT NULL THEN flag WHEN owner IS NULL THEN 'unowned' "
    "WHEN owner NOT IN (SELECT value FROM json_each(:roster)) "
    "THEN 'owner ' || owner || ' is inactive' "
    "ELSE (SELECT value FROM json_each(:reasons) WHERE key = owner) END"
)
TASK_JSON = (
    "'id', id, 'subject', subject, 'root_message_id', root_message_id, 'client', client, "
    "'owner', owner, 'status', status, 'stage', stage, 'opened_at', opened_at, "
    "'last_activity_at', last_activity_at, 'due_at', due_at, "
    "'overdue', json(CASE WHEN due_at IS NOT NULL AND status != 'closed' AND :now > due_at "
    "THEN 'true' ELSE 'false' END), "
    f"'orphaned', json(CASE WHEN ({ORPHAN_REASON}) IS NULL THEN 'false' ELSE 'true' END), "
    f"'orphan_reason', {ORPHAN_REASON}, "
    "'pending_handoff', CASE WHEN pending_to IS NULL THEN NULL ELSE json_object("
    "'from', pending_from, 'to', pending_to, 'at', pending_at, 'due_at', pending_due_at, "
    "'overdue', json(CASE WHEN pending_due_at IS NOT NULL AND :now > pending_due_at "
    "THEN 'true' ELSE 'false' END)) END, "
    "'messages', message_count, 'inboxes', json(inboxes), 'last_from', last_from"
)

INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in MESSAGE_COLUMNS)})"
)
# Replacing a stored copy rewrites what the mail says, not when it was first seen, nor
# `shared` (which only ever turns on, below).
REPLACED_COLUMNS = MESSAGE_COLUMNS.index("seen_at")
REPLACE_SET = ", ".join(f"{col} = ?" for col in MESSAGE_COLUMNS[:REPLACED_COLUMNS])


def message_values(m: Message, seen_at: str | None, shared: bool) -> tuple[Any, ...]:
    return (
        m.message_id,
        int(m.synthetic_id),
        json.dumps(m.in_reply_to),
        json.dumps(m.references),
        m.from_.name if m.from_ else None,
        m.from_.email if m.from_ else None,
        addrs(m.to),
        addrs(m.cc),
        addrs(m.reply_to),
        iso(m.date),
        int(m.date_is_fallback),
        m.subject,
        m.base_subject,
        m.normalized_subject,
        int(m.is_forward),
        m.thread_index,
        m.auto_submitted,
        m.precedence,
        int(m.x_autoreply),
        m.list_id,
        json.dumps(
            [[a.filename, a.content_type, a.size] for a in m.attachments], ensure_ascii=False
        ),
        json.dumps(list(m.defects), ensure_ascii=False),
        m.size,
        seen_at,
        int(shared),
    )


def row_message(r: sqlite3.Row, with_text: bool = False) -> Message:
    from_addr = r["from_addr"]
    return Message(
        message_id=r["message_id"],
        synthetic_id=bool(r["synthetic_id"]),
        in_reply_to=tuple(json.loads(r["in_reply_to"])),
        references=tuple(json.loads(r["refs"])),
        from_=Address(r["from_name"] or "", from_addr) if from_addr else None,
        to=load_addrs(r["to_addrs"]),
        cc=load_addrs(r["cc_addrs"]),
        reply_to=load_addrs(r["reply_to"]),
        date=parse_iso(r["date"]),  # type: ignore[arg-type]
        date_is_fallback=bool(r["date_is_fallback"]),
        subject=r["subject"],
        base_subject=r["base_subject"],
        normalized_subject=r["normalized_subject"],
        is_forward=bool(r["is_forward"]),
        thread_index=r["thread_index"],
        auto_submitted=r["auto_submitted"],
        precedence=r["precedence"],
        x_autoreply=bool(r["x_autoreply"]),
        list_id=r["list_id"],
        text=(r["text"] or "") if with_text else "",
        reply_text=(r["reply_text"] or "") if with_text else "",
        attachments=tuple(Attachment(*a) for a in json.loads(r["attachments"])),
        defects=tuple(json.loads(r["defects"])),
        size=r["size"],
    )
