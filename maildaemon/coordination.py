"""Coordination (SPEC 6, 7): a thread's timeline in, the task's state out.

Pure: no I/O and no clock; ``now`` is a parameter. This first slice derives what the
ledger needs before ownership exists: message order, kinds, whether the thread is a task,
the task's client, status and activity. Owners, clocks and their events build on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from maildaemon.classify import Classification, classify, recipients_client, writes_to_client
from maildaemon.config import Config
from maildaemon.model import Stored
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
    for e in entries:
        if e.cls.kind != "team":
            continue
        for tag in subject_tags(e.stored.message.subject):
            if tag.startswith("client:"):
                client = config.client_by_name(tag.removeprefix("client:").strip())
                if client is not None:
                    return client.name
    for e in entries:
        if e.cls.kind == "client" and not e.cls.ignored:
            return e.cls.client
    for e in entries:
        if e.cls.kind == "team":
            return recipients_client(e.stored.message, config)
    return None


def derive(
    thread: Thread, messages: Mapping[str, Stored], config: Config, now: datetime
) -> TaskState | None:
    """The state of ``thread`` as of ``now``; None when none of its messages is visible yet."""
    entries = timeline(thread, messages, config, now)
    if not entries:
        return None
    is_task = any(e.cls.kind == "client" and not e.cls.ignored for e in entries) or any(
        e.cls.kind == "team" and subject_tags(e.stored.message.subject) for e in entries
    )
    status = "open"
    for e in entries:
        if e.cls.kind == "client" and not e.cls.ignored:
            status = "open"
        elif e.cls.kind == "team" and writes_to_client(e.stored.message, config):
            status = "waiting"
    human = [e for e in entries if e.cls.kind != "auto"] or list(entries)
    last = human[-1].stored.message.from_
    inboxes = sorted({i for e in entries for i in e.stored.inboxes})
    root = entries[0].stored.message
    owner = None
    return TaskState(
        is_task=is_task,
        root_message_id=root.message_id,
        subject=root.base_subject,
        client=_task_client(entries, config),
        owner=owner,
        stage=None,
        status=status,
        opened_at=entries[0].at,
        last_activity_at=human[-1].at,
        due_at=None,
        overdue=False,
        orphaned=owner is None,
        message_count=len(entries),
        inboxes=tuple(inboxes),
        last_from=(last.name or last.email) if last is not None else None,
        timeline=entries,
    )
