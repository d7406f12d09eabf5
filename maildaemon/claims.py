"""The once-only claims of outgoing mail (SPEC 9), in the `deliveries` table.

A digest or an alert is claimed before it is sent: one row per (kind, recipient, key) holds
the rendered message and its fixed Message-ID. Claiming is a conditional insert, so two
processes (the daemon and `digest --send`, or a daemon restarted across the digest minute)
cannot both claim the same digest. The states:

    claimed -> sending -> sent
                       -> failed -> sending ... (retried with backoff) -> expired
    empty: nothing to see and `send_empty` off; claimed so the day is settled.

A claim left in `claimed` or `sending` by a crash is sent again on the next pass, with the
same bytes: the only way a copy can reach the server twice is a transaction cut off after
the server took the message, and then both copies carry one Message-ID.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maildaemon.rows import iso
from maildaemon.store import Store

OPEN_STATES = ("claimed", "sending", "failed")


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    kind: str
    recipient: str
    key: str
    message_id: str
    subject: str
    addresses: tuple[str, ...]
    raw: bytes
    state: str
    attempts: int
    claimed_at: str


def claim(
    store: Store,
    *,
    kind: str,
    recipient: str,
    key: str,
    message_id: str,
    subject: str,
    addresses: Iterable[str],
    raw: bytes,
    at: datetime,
    forced: bool = False,
    task_id: int | None = None,
    state: str = "claimed",
) -> int | None:
    """Claim one message; the row id, or None when (kind, recipient, key) was claimed
    before (by this process or another). ``forced`` claims always succeed."""
    with store.write() as c:
        cur = c.execute(
            "INSERT OR IGNORE INTO deliveries (kind, recipient, key, forced, task_id, "
            "message_id, subject, addresses, raw, state, claimed_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                recipient,
                key,
                int(forced),
                task_id,
                message_id,
                subject,
                json.dumps(list(addresses)),
                raw,
                state,
                iso(at),
                iso(at),
            ),
        )
        return cur.lastrowid if cur.rowcount else None


def claimed(store: Store, kind_like: str, keys: Iterable[str]) -> set[tuple[str, str, str]]:
    """Which (kind, recipient, key) of kinds matching ``kind_like`` (SQL LIKE) and the given
    keys are claimed already."""
    rows = store.conn.execute(
        "SELECT kind, recipient, key FROM deliveries WHERE forced = 0 AND kind LIKE ? "
        "AND key IN (SELECT value FROM json_each(?))",
        (kind_like, json.dumps(sorted(set(keys)))),
    )
    return {(k, r, key) for k, r, key in rows}


def pending(store: Store, now: datetime, *, all_open: bool = False) -> list[Claim]:
    """Claims to hand to the server now: never tried, cut off by a crash, or failed and
    due for a retry (``all_open``: failed ones too, whenever due); oldest first."""
    rows = store.conn.execute(
        "SELECT id, kind, recipient, key, message_id, subject, addresses, raw, state, "
        "attempts, claimed_at FROM deliveries "
        "WHERE state IN ('claimed', 'sending', 'failed') AND (next_attempt_at <= ? OR ?) "
        "ORDER BY id",
        (iso(now), all_open),
    ).fetchall()
    return [
        Claim(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), bytes(r[7]), *r[8:])
        for r in rows
    ]


def mark_sending(store: Store, claim_id: int, at: datetime) -> None:
    with store.write() as c:
        c.execute(
            "UPDATE deliveries SET state = 'sending', attempts = attempts + 1 WHERE id = ?",
            (claim_id,),
        )


def mark_sent(store: Store, claim_id: int, at: datetime, where: str) -> None:
    with store.write() as c:
        c.execute(
            "UPDATE deliveries SET state = 'sent', sent_at = ?, sent_to = ? WHERE id = ?",
            (iso(at), where, claim_id),
        )


def mark_failed(
    store: Store, claim_id: int, at: datetime, error: str, retry_at: datetime | None
) -> None:
    """A failed attempt: retried at ``retry_at``, or given up (`expired`) when None."""
    state = "failed" if retry_at is not None else "expired"
    with store.write() as c:
        c.execute(
            "UPDATE deliveries SET state = ?, last_error = ?, last_error_at = ?, "
            "next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
            (state, error, iso(at), iso(retry_at), claim_id),
        )


def failures(store: Store, since: datetime) -> list[dict[str, Any]]:
    """Deliveries failing now, and those given up or that failed at least once since
    ``since`` (for the team digest and `status`)."""
    rows = store.query(
        "SELECT kind, recipient, key, state, attempts, last_error, last_error_at, sent_at "
        "FROM deliveries WHERE last_error IS NOT NULL AND (state IN ('failed', 'expired') "
        "OR last_error_at >= ?) ORDER BY last_error_at DESC LIMIT 200",
        (iso(since),),
    )
    return [dict(r) for r in rows]


def recent(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest claims, for `status`."""
    rows = store.query(
        "SELECT kind, recipient, key, state, attempts, message_id, subject, claimed_at, "
        "sent_at, sent_to, last_error, last_error_at FROM deliveries "
        "ORDER BY claimed_at DESC, id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


def running_clocks(store: Store, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Running clocks of open and waiting tasks due in [since, until], with the task's
    owner, client and subject (for alerts)."""
    rows = store.query(
        "SELECT c.task_id, c.kind, c.started_at, c.due_at, t.owner, t.client, t.subject, "
        "t.status FROM clocks c JOIN tasks t ON t.id = c.task_id "
        "WHERE c.outcome = 'running' AND t.is_task = 1 AND t.status IN ('open', 'waiting') "
        "AND c.due_at >= ? AND c.due_at <= ? ORDER BY c.due_at, c.task_id",
        (iso(since), iso(until)),
    )
    return [dict(r) for r in rows]


def earliest_running(store: Store) -> dict[int, tuple[str, str]]:
    """Each task's running clock that is due first: task id -> (kind, due_at)."""
    out: dict[int, tuple[str, str]] = {}
    for task_id, kind, due in store.conn.execute(
        "SELECT task_id, kind, due_at FROM clocks WHERE outcome = 'running' "
        "ORDER BY task_id, due_at DESC"
    ):
        out[task_id] = (kind, due)
    return out
