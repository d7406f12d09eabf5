"""Coordination (SPEC 6, 7): a thread's timeline in, the task's state out.

Pure: no I/O and no clock; ``now`` is a parameter. Orders the thread's messages (SPEC 6),
classifies them, replays ownership (`ownership.py`) with the manager commands, runs the SLA
clocks (`clocks.py`) and returns the task's state with the events that explain it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from maildaemon.classify import Classification, classify, recipients_client
from maildaemon.clocks import Clock, clocks, sla_for
from maildaemon.config import Config
from maildaemon.model import Stored
from maildaemon.ownership import Command, Event, Step, orphan_reason, replay
from maildaemon.parsers.subject import subject_tags
from maildaemon.threads import Thread


@dataclass(frozen=True, slots=True)
class Entry:
    """One message on a task's timeline, in the order of SPEC 6."""

    stored: Stored
    at: datetime
    joined_by: str
    cls: Classification

    @property
    def message_id(self) -> str:
        return self.stored.message.message_id


@dataclass(frozen=True, slots=True)
class TaskState:
    """What a thread is as of a moment: the fields of `tasks --json`, before ownership."""

    is_task: bool
    root_message_id: str
    subject: str
    client: str | None
    owner: str | None
    stage: str | None
    status: str
    opened_at: datetime
    last_activity_at: datetime
    due_at: datetime | None
    overdue: bool
    orphaned: bool
    message_count: int
    inboxes: tuple[str, ...]
    last_from: str | None
    timeline: tuple[Entry, ...]
    orphan_reason: str | None = None
    flag: str | None = None
    pending: PendingHandoff | None = None
    clocks: tuple[Clock, ...] = ()
    events: tuple[Event, ...] = ()
    sla: str | None = None
    calendar: str | None = None


@dataclass(frozen=True, slots=True)
class PendingHandoff:
    """A handoff waiting for acknowledgement, with its SLA deadline."""

    from_: str | None
    to: str
    at: datetime
    due_at: datetime | None
    overdue: bool


def effective_times(messages: Sequence[Stored]) -> dict[str, datetime]:
    """Each message's Date clamped between its parent's time and the time it was seen."""
    by_id = {s.message.message_id: s for s in messages}
    result: dict[str, datetime] = {}

    def parent_of(s: Stored) -> Stored | None:
        m = s.message
        for pid in (*m.in_reply_to[:1], *reversed(m.references)):
            p = by_id.get(pid)
            if p is not None and p is not s:
                return p
        return None

    for start in messages:
        chain: list[Stored] = []
        seen: set[str] = set()
        cur: Stored | None = start
        while cur is not None and cur.message.message_id not in result:
            if cur.message.message_id in seen:  # a loop through References: cut it here
                break
            seen.add(cur.message.message_id)
            chain.append(cur)
            cur = parent_of(cur)
        floor = result.get(cur.message.message_id) if cur is not None else None
        for s in reversed(chain):
            at = s.message.date if floor is None else max(s.message.date, floor)
            at = min(at, s.seen_at)
            result[s.message.message_id] = at
            floor = at
    return result


def timeline(
    thread: Thread, messages: Mapping[str, Stored], config: Config, now: datetime
) -> tuple[Entry, ...]:
    """The thread's messages as of ``now``, ordered by clamped Date, ties by time seen."""
    members = [messages[i] for i in thread.message_ids]
    times = effective_times(members)
    why = dict(zip(thread.message_ids, thread.joined_by, strict=True))
    entries = [
        Entry(
            s, times[s.message.message_id], why[s.message.message_id], classify(s.message, config)
        )
        for s in members
        if times[s.message.message_id] <= now
    ]
    entries.sort(key=lambda e: (e.at, e.stored.seen_at, e.message_id))
    return tuple(entries)


def _task_client(entries: Sequence[Entry], config: Config) -> str | None:
    """The client of the first client message, else of the first team message's recipients.

    A `[client:NAME]` command or a `client` command overrides it during the replay."""
    for e in entries:
        if e.cls.kind == "client" and not e.cls.ignored:
            return e.cls.client
    for e in entries:
        if e.cls.kind == "team":
            return recipients_client(e.stored.message, config)
    return None


def _steps(entries: Sequence[Entry]) -> list[Step]:
    """The replay's view of the timeline: each message with the subject it replied to."""
    subjects: dict[str, str] = {}
    steps = []
    previous: str | None = None
    for e in entries:
        m = e.stored.message
        parent = None
        if m.in_reply_to and m.in_reply_to[0] in subjects:
            parent = subjects[m.in_reply_to[0]]
        else:
            known = [r for r in m.references if r in subjects]
            parent = subjects[known[-1]] if known else previous
        kind = "auto" if e.cls.ignored else e.cls.kind
        steps.append(Step(e.at, m, kind, parent))
        subjects[m.message_id] = m.subject
        previous = m.subject
    return steps


def derive(
    thread: Thread,
    messages: Mapping[str, Stored],
    config: Config,
    now: datetime,
    commands: Sequence[Command] = (),
) -> TaskState | None:
    """The state of ``thread`` as of ``now``; None when none of its messages is visible yet."""
    entries = timeline(thread, messages, config, now)
    if not entries:
        return None
    steps = _steps(entries)
    visible = [c for c in commands if c.at <= now]
    own = replay(steps, visible, config, _task_client(entries, config))
    is_task = (
        any(s.kind == "client" for s in steps)
        or any(s.kind == "team" and subject_tags(s.message.subject) for s in steps)
        or bool(visible)
    )
    sla = sla_for(config, own.client)
    changes = [(e.at, e.kind) for e in own.events if e.kind in ("close", "reopen")]
    task_clocks = tuple(clocks(steps, own, sla, config, changes)) if is_task else ()
    running = [c for c in task_clocks if c.outcome == "running"]
    due_at = min((c.due_at for c in running), default=None)
    pending = None
    if own.pending is not None:
        ack = next((c for c in running if c.kind == "handoff_ack"), None)
        pending = PendingHandoff(
            own.pending.from_,
            own.pending.to,
            own.pending.at,
            ack.due_at if ack else None,
            bool(ack and ack.overdue(now)),
        )
    day = now.astimezone(ZoneInfo(config.daemon.timezone)).date()
    orphan = orphan_reason(own.owner, own.flag, config, day)
    human = [e for e in entries if e.cls.kind != "auto"] or list(entries)
    last = human[-1].stored.message.from_
    inboxes = sorted({i for e in entries for i in e.stored.inboxes})
    root = entries[0].stored.message
    return TaskState(
        is_task=is_task,
        root_message_id=root.message_id,
        subject=root.base_subject,
        client=own.client,
        owner=own.owner,
        stage=own.stage,
        status=own.status,
        opened_at=entries[0].at,
        last_activity_at=human[-1].at,
        due_at=due_at,
        overdue=due_at is not None and now > due_at,
        orphaned=orphan is not None,
        message_count=len(entries),
        inboxes=tuple(inboxes),
        last_from=(last.name or last.email) if last is not None else None,
        timeline=entries,
        orphan_reason=orphan,
        flag=own.flag,
        pending=pending,
        clocks=task_clocks,
        events=own.events,
        sla=sla.tier,
        calendar=sla.calendar_name,
    )
