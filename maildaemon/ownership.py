"""Ownership (SPEC 6.1, 6.2): who holds a task at each moment, and why.

Pure. A replay over the task's timeline (its messages in order and the manager commands on
it) that keeps one owner at a time and records every change as an `Event` naming its rule
and the message or command behind it. Subject tags from team members are commands when they
are new; otherwise the reply chain decides: first responder, handoff by addressing, a client
addressing one person, acknowledgement. Auto messages never count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from maildaemon.config import Config, Person
from maildaemon.durations import BusinessDuration
from maildaemon.model import Message
from maildaemon.tags import Tag, new_tags, parse_due

Verb = Literal["assign", "unassign", "close", "reopen", "stage", "client", "due"]
VERBS: tuple[str, ...] = ("assign", "unassign", "close", "reopen", "stage", "client", "due")


@dataclass(frozen=True, slots=True)
class Command:
    """A command given on the CLI: an event on the task's timeline at the moment it was given."""

    at: datetime
    actor: str
    verb: Verb
    arg: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """A change of owner waiting for the new owner's acknowledgement."""

    from_: str | None
    to: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One change of a task's state, with the rule and the message or command behind it."""

    at: datetime
    kind: str
    rule: str
    owner_from: str | None = None
    owner_to: str | None = None
    message_id: str | None = None
    actor: str | None = None
    detail: str = ""


# A handoff's life: (handoff, when acknowledged or None); used by the handoff clocks.
HandoffSpan = tuple[Handoff, datetime | None]
# An explicit deadline: (set at, a day or a business duration from then).
DueCommand = tuple[datetime, date | BusinessDuration]


@dataclass(frozen=True, slots=True)
class Step:
    """One message of the timeline as the replay needs it."""

    at: datetime
    message: Message
    kind: str  # team / client / auto
    parent_subject: str | None


@dataclass(slots=True)
class _State:
    client: str | None
    owner: str | None = None
    stage: str | None = None
    status: str = "open"
    pending: Handoff | None = None
    flag: str | None = None
    due: DueCommand | None = None
    handoffs: list[HandoffSpan] = field(default_factory=list)
    closed_at: datetime | None = None
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ownership:
    """The replay's result as of its last step."""

    owner: str | None
    stage: str | None
    client: str | None
    status: str
    pending: Handoff | None
    flag: str | None
    due: DueCommand | None
    handoffs: tuple[HandoffSpan, ...]
    closed_at: datetime | None
    events: tuple[Event, ...]


def _roster(config: Config, addrs: Sequence[str]) -> list[Person]:
    people: list[Person] = []
    for a in addrs:
        p = config.person_for_address(a)
        if p is not None and p not in people:
            people.append(p)
    return people


def _local_day(at: datetime, config: Config) -> date:
    return at.astimezone(ZoneInfo(config.daemon.timezone)).date()


def available(person: Person, day: date) -> bool:
    """Active and not away on ``day``."""
    return person.active and not person.is_away(day)


class _Replay:
    def __init__(self, config: Config, client: str | None) -> None:
        self.config = config
        self.s = _State(client=client)

    # -- changes, each with its event -----------------------------------------------------

    def emit(self, at: datetime, kind: str, rule: str, detail: str, **ids: str | None) -> None:
        self.s.events.append(
            Event(
                at,
                kind,
                rule,
                self.s.owner,
                self.s.owner,
                ids.get("message_id"),
                ids.get("actor"),
                detail,
            )
        )

    def set_owner(
        self, at: datetime, to: str | None, by: str | None, rule: str, **ids: str | None
    ) -> None:
        """Give the task to ``to``: a claim when ``by`` is ``to``, else a pending handoff."""
        s = self.s
        before = s.owner
        s.flag = None  # a valid change of owner clears a bad-tag flag
        if to == before and (s.pending is None or s.pending.to == to):
            return
        self._close_pending(at, acked=False)
        s.owner = to
        if to is not None and to != by:
            s.pending = Handoff(before, to, at)
            kind, detail = "handoff", f"handed to {to}, waiting for acknowledgement"
        else:
            kind = "owner"
            detail = f"{to} took it" if to is not None else "now unowned"
        s.events.append(
            Event(at, kind, rule, before, to, ids.get("message_id"), ids.get("actor"), detail)
        )

    def _close_pending(self, at: datetime, *, acked: bool) -> None:
        s = self.s
        if s.pending is not None:
            s.handoffs.append((s.pending, at if acked else None))
            s.pending = None

    def acknowledge(self, at: datetime, person: str, rule: str, **ids: str | None) -> bool:
        s = self.s
        if s.pending is not None and s.pending.to == person:
            self._close_pending(at, acked=True)
            self.emit(at, "ack", rule, f"{person} acknowledged the handoff", **ids)
            return True
        return False

    def set_stage(
        self,
        at: datetime,
        stage: str,
        by: str | None,
        with_owner: bool,
        rule: str,
        **ids: str | None,
    ) -> None:
        s = self.s
        s.stage = stage
        s.flag = None
        self.emit(at, "stage", rule, f"stage {stage}", **ids)
        if with_owner:
            return
        client = self.config.client_by_name(s.client) if s.client else None
        mapped = client.map.get(stage) if client is not None else None
        if mapped is None:
            s.flag = f"no owner for stage {stage} of {s.client or 'this task'} (a hole in the map)"
            self.emit(at, "flag", "map-hole", s.flag, **ids)
        else:
            self.set_owner(at, mapped, by, f"{rule} (map)", **ids)

    def close(self, at: datetime, rule: str, **ids: str | None) -> None:
        if self.s.status != "closed":
            self.s.status = "closed"
            self.s.closed_at = at
            self.emit(at, "close", rule, "closed", **ids)

    def reopen(self, at: datetime, rule: str, **ids: str | None) -> None:
        s = self.s
        if s.status != "closed":
            return
        s.status = "open"
        s.closed_at = None
        self.emit(at, "reopen", rule, "reopened", **ids)
        if s.owner is not None:
            person = self.config.person_by_name(s.owner)
            if person is None or not available(person, _local_day(at, self.config)):
                self.set_owner(at, None, None, "reopen: owner inactive or away", **ids)

    # -- messages ---------------------------------------------------------------------------

    def message(self, step: Step) -> None:
        m, at, s = step.message, step.at, self.s
        if step.kind == "auto":
            return
        mid = m.message_id
        sender = m.from_.email if m.from_ is not None else ""
        person = self.config.person_for_address(sender) if sender else None
        # The new owner writing anything acknowledges; that reply (typically "on it", to
        # whoever handed it over) is not itself a handoff back by addressing.
        acked = person is not None and self.acknowledge(
            at, person.name, "ack: the new owner wrote", message_id=mid
        )
        tags = new_tags(m.subject, step.parent_subject, self.config)
        commanded = acked
        if tags and step.kind != "team":
            # [#ID] places a message for any known participant (SPEC 5): not ignored.
            ignored = [t.raw for t in tags if t.kind != "ref"]
            if ignored:
                self.emit(
                    at,
                    "ignored",
                    "tag from outside the team",
                    f"{' '.join(ignored)} ignored: {sender} is not on the team",
                    message_id=mid,
                )
            tags = ()
        mark = len(s.events)
        for tag in tags:
            commanded |= self.tag(at, tag, tags, person, mid)
        flagged_here = any(e.kind == "flag" for e in s.events[mark:])
        if step.kind == "client":
            if s.status == "closed":
                self.reopen(at, "client wrote on a closed task", message_id=mid)
            else:
                s.status = "open"
        elif step.kind == "team" and s.status != "closed" and self._to_client(m):
            s.status = "waiting"
        if not commanded:
            flag = s.flag
            self.infer(step, person)
            if flagged_here:
                s.flag = flag  # this message's bad tag stays flagged past its own inference

    def _to_client(self, m: Message) -> bool:
        return any(not self.config.is_team_address(a.email) for a in (*m.to, *m.cc))

    def tag(
        self, at: datetime, tag: Tag, all_tags: Sequence[Tag], person: Person | None, mid: str
    ) -> bool:
        """Apply one new tag from a team member; True for an owner or stage command."""
        s, by = self.s, (person.name if person else None)
        rule = f"tag {tag.raw}"
        if not tag.known:
            s.flag = f"unknown {tag.kind} in {tag.raw}"
            self.emit(at, "flag", rule, s.flag, message_id=mid)
            return tag.kind in ("owner", "stage")
        if tag.kind == "owner":
            to = by if tag.value == "me" else (None if tag.value == "none" else tag.value)
            if tag.value == "me" and by is None:
                s.flag = f"{tag.raw} from a sender who is not on the roster"
                self.emit(at, "flag", rule, s.flag, message_id=mid)
                return True
            self.set_owner(at, to, by, rule, message_id=mid)
            return True
        if tag.kind == "stage" and tag.value is not None:
            with_owner = any(t.kind == "owner" for t in all_tags)
            self.set_stage(at, tag.value, by, with_owner, rule, message_id=mid)
            return True
        if tag.kind == "client" and tag.value is not None:
            s.client = tag.value
            self.emit(at, "client", rule, f"client {tag.value}", message_id=mid)
        elif tag.kind == "due" and tag.value is not None:
            due = parse_due(tag.value)
            if due is not None:
                s.due = (at, due)
                self.emit(at, "due", rule, f"due {tag.value}", message_id=mid)
        elif tag.kind == "close":
            self.close(at, rule, message_id=mid)
        elif tag.kind == "ack" and by is not None:
            self.acknowledge(at, by, rule, message_id=mid)
        return False

    def infer(self, step: Step, person: Person | None) -> None:
        """SPEC 6.2, rules 1-3, the first that matches."""
        m, at, s = step.message, step.at, self.s
        mid = m.message_id
        to_people = _roster(self.config, [a.email for a in m.to])
        recipients = [a.email for a in (*m.to, *m.cc)]
        client_in = any(not self.config.is_team_address(a) for a in recipients)
        if step.kind == "team":
            if s.owner is None and person is not None and client_in:
                self.set_owner(at, person.name, person.name, "first responder", message_id=mid)
                return
            others = [p for p in to_people if person is None or p.name != person.name]
            may_hand = s.owner is None or (
                person is not None and (person.name == s.owner or person.manager)
            )
            # Addressing the current owner changes nothing (and clears no flag).
            if may_hand and len(others) == 1 and not client_in and others[0].name != s.owner:
                target = others[0].name
                by = person.name if person else None
                self.set_owner(at, target, by, "handoff by addressing", message_id=mid)
        elif step.kind == "client" and s.owner is None and len(to_people) == 1:
            self.set_owner(
                at, to_people[0].name, None, "client addressed one person", message_id=mid
            )

    # -- commands ---------------------------------------------------------------------------

    def command(self, c: Command) -> None:
        s, at, ids = self.s, c.at, {"actor": c.actor}
        rule = f"command {c.verb}"
        if c.verb == "assign" and c.arg is not None:
            if s.pending is not None and s.pending.to == c.arg == c.actor:
                self.acknowledge(at, c.actor, rule, **ids)
            else:
                self.set_owner(at, c.arg, c.actor, rule, **ids)
        elif c.verb == "unassign":
            self.set_owner(at, None, c.actor, rule, **ids)
        elif c.verb == "close":
            self.close(at, rule, **ids)
        elif c.verb == "reopen":
            self.reopen(at, rule, **ids)
        elif c.verb == "stage" and c.arg is not None:
            self.set_stage(at, c.arg, c.actor, False, rule, **ids)
        elif c.verb == "client" and c.arg is not None:
            s.client = c.arg
            self.emit(at, "client", rule, f"client {c.arg}", **ids)
        elif c.verb == "due" and c.arg is not None:
            due = parse_due(c.arg)
            if due is not None:
                s.due = (at, due)
                self.emit(at, "due", rule, f"due {c.arg}", **ids)
        if c.note:
            self.emit(at, "note", rule, c.note, **ids)


def replay(
    steps: Sequence[Step], commands: Sequence[Command], config: Config, client: str | None
) -> Ownership:
    """Replay messages and commands in time order (a message before a command at the same
    moment) and return who owns the task, with every change explained."""
    r = _Replay(config, client)
    timeline: list[tuple[datetime, int, Step | Command]] = [(s.at, 0, s) for s in steps]
    timeline += [(c.at, 1, c) for c in commands]
    timeline.sort(key=lambda t: (t[0], t[1]))
    for _, _, item in timeline:
        if isinstance(item, Step):
            r.message(item)
        else:
            r.command(item)
    s = r.s
    return Ownership(
        owner=s.owner,
        stage=s.stage,
        client=s.client,
        status=s.status,
        pending=s.pending,
        flag=s.flag,
        due=s.due,
        handoffs=tuple(s.handoffs),
        closed_at=s.closed_at,
        events=tuple(s.events),
    )


def orphan_reason(owner: str | None, flag: str | None, config: Config, day: date) -> str | None:
    """Why a task is orphaned on ``day`` (SPEC 6.2), or None: a bad tag or map hole, no
    owner, an inactive owner, or an owner away with no cover."""
    if flag is not None:
        return flag
    if owner is None:
        return "unowned"
    person = config.person_by_name(owner)
    if person is None or not person.active:
        return f"owner {owner} is inactive"
    if person.is_away(day) and (person.away is None or person.away.cover is None):
        return f"owner {owner} is away with no cover"
    return None
