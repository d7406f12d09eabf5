"""Task views: the JSON objects of SPEC 10 (`tasks --json`, `show --json`), and their order.

Pure: stored rows or freshly derived states in, plain dicts out. The same dict feeds the
JSON output and the human tables, so both always say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from maildaemon.clocks import Clock
from maildaemon.config import Config
from maildaemon.coordination import Entry, TaskState
from maildaemon.ownership import Event, orphan_reason
from maildaemon.rows import iso, parse_iso


def _day(config: Config, now: datetime) -> date:
    return now.astimezone(ZoneInfo(config.daemon.timezone)).date()


def _pending(
    frm: str | None, to: str | None, at: str | None, due: str | None, now_iso: str
) -> dict[str, Any] | None:
    if to is None:
        return None
    return {"from": frm, "to": to, "at": at, "due_at": due, "overdue": bool(due and now_iso > due)}


def unavailable_owners(config: Config, now: datetime) -> dict[str, str]:
    """Roster people who cannot hold a task on ``now``'s day, with the reason (SPEC 6.2)."""
    day = _day(config, now)
    out = {}
    for p in config.people:
        reason = orphan_reason(p.name, None, config, day)
        if reason is not None:
            out[p.name] = reason
    return out


def from_state(task_id: int, state: TaskState, now: datetime) -> dict[str, Any]:
    """A state derived as of ``now`` (for ``--now`` in the past) as the task object."""
    p = state.pending
    return {
        "id": task_id,
        "subject": state.subject,
        "root_message_id": state.root_message_id,
        "client": state.client,
        "owner": state.owner,
        "status": state.status,
        "stage": state.stage,
        "opened_at": iso(state.opened_at),
        "last_activity_at": iso(state.last_activity_at),
        "due_at": iso(state.due_at),
        "overdue": state.overdue,
        "orphaned": state.orphaned,
        "orphan_reason": state.orphan_reason,
        "pending_handoff": _pending(p.from_, p.to, iso(p.at), iso(p.due_at), iso(now) or "")
        if p is not None
        else None,
        "messages": state.message_count,
        "inboxes": list(state.inboxes),
        "last_from": state.last_from,
    }


def clock_entry(c: Clock, now: datetime) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "started_at": iso(c.started_at),
        "due_at": iso(c.due_at),
        "stopped_at": iso(c.stopped_at),
        "outcome": c.outcome,
        "overdue": c.overdue(now),
        "detail": c.detail,
    }


def state_event(e: Event) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "kind": e.kind,
        "rule": e.rule,
        "owner_from": e.owner_from,
        "owner_to": e.owner_to,
        "message_id": e.message_id,
        "actor": e.actor,
        "detail": e.detail,
    }


def timeline_entry(e: Entry) -> dict[str, Any]:
    m = e.stored.message
    return {
        "message_id": m.message_id,
        "from": m.from_.email if m.from_ else None,
        "from_name": m.from_.name if m.from_ else None,
        "to": [a.email for a in m.to],
        "cc": [a.email for a in m.cc],
        "date": iso(e.at),
        "kind": e.cls.kind,
        "subject": m.subject,
        "joined_by": e.joined_by,
        "inboxes": list(e.stored.inboxes),
        "auto_reason": e.cls.reason if e.cls.kind == "auto" else None,
        "attachments": [{"filename": a.filename, "size": a.size} for a in m.attachments],
        "defects": list(m.defects),
        "reply_text": m.reply_text,
    }


def event_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": row["at"],
        "kind": row["kind"],
        "rule": row["rule"],
        "owner_from": row["owner_from"],
        "owner_to": row["owner_to"],
        "message_id": row["message_id"],
        "actor": row["actor"],
        "detail": row["detail"],
    }


def urgency_key(task: Mapping[str, Any]) -> tuple[Any, ...]:
    """Most urgent first: overdue, then by due time, then longest without activity."""
    return (
        not task["overdue"],
        task["due_at"] is None,
        task["due_at"] or "",
        task["last_activity_at"],
        task["id"],
    )


def sort_tasks(tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tasks, key=urgency_key)


def age(since: str | None, now: datetime) -> str:
    """A short human age: 45m, 5h, 3d."""
    start = parse_iso(since)
    if start is None:
        return "-"
    seconds = max(0, int((now - start).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def owner_cell(task: Mapping[str, Any]) -> str:
    """The owner as a table shows it: unowned, or waiting for acknowledgement."""
    owner = task["owner"] or "(unowned)"
    if task["pending_handoff"] is not None:
        owner += " (unacked)"
    return owner


def due_cell(task: Mapping[str, Any], now: datetime) -> str:
    """``OVERDUE 3h``, ``in 45m``, or ``-``."""
    due = parse_iso(task["due_at"])
    if due is None or task["status"] == "closed":
        return "-"
    if now > due:
        return f"OVERDUE {age(task['due_at'], now)}"
    return f"in {age(iso(now), due)}"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], wrap_last: int = 0) -> str:
    """A plain aligned table; the last column is cut to ``wrap_last`` characters if set."""
    cells = [list(headers), *[list(r) for r in rows]]
    if wrap_last:
        for r in cells[1:]:
            if len(r[-1]) > wrap_last:
                r[-1] = r[-1][: wrap_last - 1] + "…"
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


JOINED = {
    "root": "first message of the thread",
    "in-reply-to": "In-Reply-To names a message of this thread",
    "references": "References names a message of this thread",
    "unseen-parent": "shares a referenced message that was never seen",
    "referenced-by": "later messages of this thread reference it",
    "thread-index": "Outlook Thread-Index conversation",
    "task-ref": "[#ID] task reference in the subject",
    "subject": "same subject, sender took part in the thread (30 days)",
    "forward": "a team member's forward of a thread that reached a shared inbox",
}


def render_show(obj: Mapping[str, Any], now: datetime) -> str:
    """`show` for people: the task, its timeline with why each message joined, its events."""
    kind = "task" if obj["is_task"] else "thread (not a task: no client message or team tag)"
    owner = obj["owner"] or "(unowned)"
    lines = [
        f"#{obj['id']}  {obj['subject'] or '(no subject)'}",
        f"  {kind}; client {obj['client'] or '-'}; owner {owner}; status {obj['status']}",
        f"  opened {obj['opened_at']} ({age(obj['opened_at'], now)} ago); "
        f"last activity {obj['last_activity_at']}",
        f"  root {obj['root_message_id']}; inboxes {', '.join(obj['inboxes']) or '-'}",
    ]
    pending = obj.get("pending_handoff")
    if pending:
        late = " (OVERDUE)" if pending["overdue"] else ""
        lines.append(
            f"  handoff {pending['from'] or 'nobody'} -> {pending['to']} at {pending['at']}, "
            f"acknowledgement due {pending['due_at'] or '-'}{late}"
        )
    if obj.get("orphan_reason"):
        lines.append(f"  orphaned: {obj['orphan_reason']}")
    if obj.get("clocks"):
        sla = obj.get("sla") or {}
        lines += ["", f"Clocks (tier {sla.get('tier')}, calendar {sla.get('calendar')}):"]
        for c in obj["clocks"]:
            state = "OVERDUE" if c["overdue"] else c["outcome"]
            end = f", stopped {c['stopped_at']}" if c["stopped_at"] else ""
            detail = f" ({c['detail']})" if c["detail"] else ""
            lines.append(f"  {c['kind']:<15} {state:<8} due {c['due_at']}{end}{detail}")
    lines += ["", f"Timeline ({obj['messages']} messages):"]
    for e in obj["timeline"]:
        who = e["from_name"] or e["from"] or "?"
        extra = f" [{e['auto_reason']}]" if e["auto_reason"] else ""
        lines.append(f"  {e['date']}  {e['kind']:<6} {who}{extra}")
        if e["to"]:
            lines.append(f"      to: {', '.join(e['to'])}")
        lines.append(f"      {e['subject'] or '(no subject)'}")
        lines.append(f"      joined by: {JOINED.get(e['joined_by'], e['joined_by'])}")
        if e["defects"]:
            lines.append(f"      defects: {'; '.join(e['defects'][:3])}")
    if obj["events"]:
        lines += ["", "Events:"]
        for ev in obj["events"]:
            by = f" by {ev['actor']}" if ev.get("actor") else ""
            lines.append(f"  {ev['at']}  {ev['kind']} ({ev['rule']}{by}): {ev['detail'] or ''}")
    return "\n".join(lines)
