"""Re-derivation: stored messages -> threads -> task states -> the rows that must change.

Pure: the store's current contents in, a `DerivedWrites` plan out. Task ids are stable:
a thread keeps the id of the task most of its messages had; when a late message joins two
tasks, the older one's id stays and the other becomes an alias (SPEC 5).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maildaemon.config import Config
from maildaemon.coordination import TaskState, derive
from maildaemon.model import Stored
from maildaemon.ownership import Command
from maildaemon.rows import TASK_COLUMNS, DerivedWrites, Row, iso
from maildaemon.threads import Rules, Thread, thread_messages

# Bump when a change to the rules (threading, ownership, clocks) changes derived state:
# stored tasks then read as stale until `recompute` (or the next sync) re-derives them.
RULES_VERSION = 3


def derivation_fingerprint(config: Config) -> str:
    """What derived state records it was derived under: the config and the rules."""
    return f"{config.fingerprint[:32]}-r{RULES_VERSION}"


def threading_rules(
    config: Config,
    aliases: Mapping[int, int],
    repairs: tuple[tuple[tuple[str, str], ...], frozenset[str]] = ((), frozenset()),
) -> Rules:
    return Rules(
        subject_fallback=config.threading.subject_fallback,
        is_team=config.is_team_address,
        is_shared=config.is_shared_address,
        resolve_task=lambda n: aliases.get(n, n),
        merges=repairs[0],
        splits=repairs[1],
    )


def task_values(state: TaskState, fingerprint: str) -> tuple[Any, ...]:
    """The `tasks` row of a state, in `store.TASK_COLUMNS` order."""
    return (
        int(state.is_task),
        state.root_message_id,
        state.subject,
        state.client,
        state.owner,
        state.stage,
        state.status,
        iso(state.opened_at),
        iso(state.last_activity_at),
        iso(state.due_at),
        int(state.orphaned),
        state.message_count,
        json.dumps(list(state.inboxes)),
        state.last_from,
        fingerprint,
        state.pending.from_ if state.pending else None,
        state.pending.to if state.pending else None,
        iso(state.pending.at) if state.pending else None,
        iso(state.pending.due_at) if state.pending else None,
        state.flag,
    )


def derived_rows(state: TaskState) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The replay's events and the clocks of a state, as store rows."""
    events = [
        (iso(e.at), e.kind, e.rule, e.owner_from, e.owner_to, e.message_id, e.actor, e.detail)
        for e in state.events
    ]
    clocks = [
        (c.kind, iso(c.started_at), iso(c.due_at), iso(c.stopped_at), c.outcome, c.detail)
        for c in state.clocks
    ]
    return events, clocks


@dataclass(frozen=True, slots=True)
class Plan:
    writes: DerivedWrites
    threads: int
    tasks: int


def _claims(
    threads: Sequence[Thread], by_id: Mapping[str, Stored], roots: Mapping[int, str]
) -> dict[int, int]:
    """Which thread (index) keeps each prior task id: the one holding the task's root
    message; failing that, the one holding most of the task's messages."""
    where = {mid: i for i, t in enumerate(threads) for mid in t.message_ids}
    counts: dict[int, Counter[int]] = {}
    for i, t in enumerate(threads):
        for mid in t.message_ids:
            prior = by_id[mid].prior_task
            if prior is not None:
                counts.setdefault(prior, Counter())[i] += 1
    claims = {}
    for task, c in counts.items():
        root = roots.get(task)
        claims[task] = where[root] if root in where else c.most_common(1)[0][0]
    return claims


def plan(
    stored: Sequence[Stored],
    rows: Mapping[str, Row],
    current: Mapping[int, tuple[Any, ...]],
    opened: Mapping[int, tuple[str, str]],
    aliases: Mapping[int, int],
    config: Config,
    now: datetime,
    commands: Mapping[int, Sequence[Command]] | None = None,
    repairs: tuple[tuple[tuple[str, str], ...], frozenset[str]] = ((), frozenset()),
    touched: frozenset[str] | None = None,
) -> Plan:
    """Everything that must change in the store for it to match the messages and config.

    Threading is always global (a new message can link or move anything), but only the
    threads that changed are re-derived: those with a message in ``touched`` (new or
    replaced mail), whose membership changed, or whose state was derived under another
    config or rules. ``touched=None`` re-derives every thread (`recompute`)."""
    by_id = {s.message.message_id: s for s in stored}
    threads = thread_messages(stored, threading_rules(config, aliases, repairs))
    claims = _claims(threads, by_id, {t: root for t, (_, root) in opened.items()})
    owned: dict[int, list[int]] = {}
    for task, idx in claims.items():
        owned.setdefault(idx, []).append(task)

    writes = DerivedWrites([], [], [], [], [])
    fingerprint = derivation_fingerprint(config)
    at = iso(now) or ""
    next_placeholder = -1
    tasks = 0
    commands = commands or {}
    stamp = TASK_COLUMNS.index("config_fingerprint")
    for idx, thread in enumerate(threads):
        mine = sorted(owned.get(idx, ()), key=lambda t: (opened[t][0] if t in opened else "", t))
        if touched is not None and len(mine) == 1:
            stored_row = current.get(mine[0])
            if (
                stored_row is not None
                and stored_row[stamp] == fingerprint
                and not any(mid in touched for mid in thread.message_ids)
                and all(by_id[mid].prior_task == mine[0] for mid in thread.message_ids)
            ):
                tasks += stored_row[0]
                continue
        given = sorted((c for t in mine for c in commands.get(t, ())), key=lambda c: c.at)
        state = derive(thread, by_id, config, now, given)
        if state is None:
            continue
        values = task_values(state, fingerprint)
        if mine:
            task_id = mine[0]
            if current.get(task_id) != values or len(mine) > 1:
                writes.changed_tasks.append((task_id, values))
                writes.derived[task_id] = derived_rows(state)
            for other in mine[1:]:
                writes.aliases.append((other, task_id, at))
                writes.events.append(
                    (
                        task_id,
                        at,
                        "merged",
                        "header-link",
                        None,
                        f"task {other} merged into {task_id}",
                    )
                )
        else:
            task_id = next_placeholder
            next_placeholder -= 1
            writes.new_tasks.append((task_id, values))
            writes.derived[task_id] = derived_rows(state)
        tasks += state.is_task
        for entry in state.timeline:
            mid = entry.message_id
            new_row = Row(task_id, entry.joined_by, entry.cls.kind, iso(entry.at))
            old = rows.get(mid)
            if old != new_row:
                writes.message_rows.append(
                    (mid, (new_row.task_id, new_row.joined_by, new_row.kind, new_row.effective_at))
                )
            prior = by_id[mid].prior_task
            if prior is not None and prior != task_id and prior not in mine:
                writes.events.append(
                    (
                        task_id,
                        at,
                        "moved",
                        entry.joined_by,
                        mid,
                        f"message moved here from task {prior}",
                    )
                )
    return Plan(writes, len(threads), tasks)


# -- what a re-derivation changes, as `recompute` prints it and the daemon logs it (SPEC 11)

_COMPARED = [i for i, col in enumerate(TASK_COLUMNS) if col != "config_fingerprint"]


def _change(task_id: int | None, field: str, before: Any, after: Any) -> dict[str, Any]:
    return {"id": task_id, "field": field, "before": before, "after": after}


def _clock_key(rows: Iterable[Sequence[Any]]) -> dict[tuple[Any, ...], Sequence[Any]]:
    """Clock rows by (kind, started_at, n): n tells apart clocks that share both."""
    out: dict[tuple[Any, ...], Sequence[Any]] = {}
    for r in rows:
        out[(r[0], r[1], sum(1 for k in out if k[:2] == (r[0], r[1])))] = r
    return out


def clock_changes(
    task_id: int, before: Iterable[Sequence[Any]], after: Iterable[Sequence[Any]]
) -> list[dict[str, Any]]:
    """What a manager sees change in a task's clocks: a running deadline that moves, an
    outcome that flips, a clock that appears or goes. (An ended clock whose recorded
    deadline moves without changing its outcome is rewritten, not reported.)"""
    old, new = _clock_key(before), _clock_key(after)
    out = []
    for key in sorted({*old, *new}, key=lambda k: (k[1], k[0], k[2])):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or a[4] != b[4]:
            views_ = [None if r is None else f"{r[4]}, due {r[2]}" for r in (a, b)]
            out.append(_change(task_id, f"clocks.{key[0]}", *views_))
        elif b[4] == "running" and a[2] != b[2]:
            out.append(_change(task_id, f"clocks.{key[0]}.due_at", a[2], b[2]))
    return out


def recompute_changes(
    writes: DerivedWrites,
    current: Mapping[int, Sequence[Any]],
    clocks: Mapping[int, Sequence[Sequence[Any]]],
) -> list[dict[str, Any]]:
    """The visible changes of a re-derivation plan, one {id, field, before, after} each."""
    out: list[dict[str, Any]] = []
    for task_id, values in sorted(writes.changed_tasks):
        before = current.get(task_id)
        for i in _COMPARED:
            old = before[i] if before is not None else None
            if old != values[i]:
                out.append(_change(task_id, TASK_COLUMNS[i], old, values[i]))
        if task_id in writes.derived:
            out += clock_changes(task_id, clocks.get(task_id, ()), writes.derived[task_id][1])
    for _, values in writes.new_tasks:
        out.append(_change(None, "new_task", None, values[TASK_COLUMNS.index("subject")]))
    for old_id, new_id, _ in writes.aliases:
        out.append(_change(old_id, "merged_into", old_id, new_id))
    return out


LABELS = {"due_at": "due", "pending_to": "handoff to", "pending_due_at": "handoff due"}


def _label(field: str) -> str:
    return LABELS.get(field, field.removeprefix("clocks.").replace(".due_at", " due"))


def change_lines(changes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Changes for people: one line per new task, then one per changed task
    (``#3: due 2026-11-24T15:12:00Z -> 2026-11-24T17:12:00Z, owner none -> alice``)."""
    new: list[str] = []
    by_task: dict[int, list[str]] = {}
    for c in changes:
        before, after = ("none" if v is None else v for v in (c["before"], c["after"]))
        if c["id"] is None:
            new.append(f"new task: {c['after'] or '(no subject)'}")
            continue
        by_task.setdefault(c["id"], []).append(f"{_label(c['field'])} {before} -> {after}")
    return new + [f"#{task_id}: {', '.join(parts)}" for task_id, parts in by_task.items()]
