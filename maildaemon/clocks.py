"""SLA clocks (SPEC 7): each promise to a client as a clock with a start, a deadline in the
client's business hours, and an outcome.

Pure. First response, follow-up and update run only while the task is open; a handoff runs
until the new owner acknowledges; resolution and explicit `[due:]` deadlines until closing.
Closing stops every clock: one already past its deadline is missed, the others void (a
resolution or due clock stopped by closing in time is met).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from maildaemon.businesstime import BusinessCalendar
from maildaemon.config import TARGETS, Config
from maildaemon.durations import BusinessDuration
from maildaemon.ownership import Ownership, Step


@dataclass(frozen=True, slots=True)
class Clock:
    kind: str  # first_response, follow_up, update, handoff_ack, resolution, due
    started_at: datetime
    due_at: datetime
    stopped_at: datetime | None
    outcome: str  # running, met, missed, void
    detail: str = ""

    def overdue(self, now: datetime) -> bool:
        return self.outcome == "running" and now > self.due_at


@dataclass(frozen=True, slots=True)
class Sla:
    """The promise a task runs under: targets and the calendar they count in."""

    tier: str
    targets: Mapping[str, BusinessDuration | None]
    calendar: BusinessCalendar
    calendar_name: str


def _calendar(config: Config, name: str | None) -> BusinessCalendar:
    # BusinessCalendar caches by value, so this is cheap after the first call.
    if name is None:
        return BusinessCalendar.always(config.daemon.timezone)
    return BusinessCalendar.from_config(config.calendars[name])


def sla_for(config: Config, client_name: str | None) -> Sla:
    """The tier, add-ons and calendar of a client (SPEC 3, 7); defaults for no client."""
    client = config.client_by_name(client_name) if client_name else None
    tier_name = client.tier if client is not None else config.sla.default_tier
    tier = config.sla.tiers[tier_name]
    targets = {t: getattr(tier, t) for t in TARGETS}
    calendar = client.calendar if client is not None else config.sla.default_calendar
    for addon_name in client.addons if client is not None else ():
        addon = config.sla.addons[addon_name]
        calendar = addon.calendar or calendar
        for t in TARGETS:
            value = getattr(addon, t)
            if value is not None:
                targets[t] = value
    if client is not None and calendar is None:
        calendar = config.sla.default_calendar
    return Sla(tier_name, targets, _calendar(config, calendar), calendar or "24/7")


def _stop(clock: Clock, at: datetime, *, done: bool = True) -> Clock:
    """Stop a running clock at ``at``: met in time, missed late; ``done=False`` (closing
    stopped it without the move it waited for) makes an in-time stop void."""
    late = at > clock.due_at
    outcome = "missed" if late else ("met" if done else "void")
    return Clock(clock.kind, clock.started_at, clock.due_at, at, outcome, clock.detail)


def clocks(
    steps: Sequence[Step],
    ownership: Ownership,
    sla: Sla,
    config: Config,
    close_events: Sequence[tuple[datetime, str]] = (),
) -> list[Clock]:
    """Every clock of a task: ended ones with their outcome, running ones with a deadline.

    ``close_events`` are the task's (time, "close" | "reopen") changes from the replay.
    """
    cal, t = sla.calendar, sla.targets
    done: list[Clock] = []
    running: dict[str, Clock] = {}

    def start(kind: str, at: datetime, detail: str = "") -> None:
        target = t.get(kind if kind != "update" else "update_every")
        if target is not None and kind not in running:
            running[kind] = Clock(kind, at, cal.add(at, target), None, "running", detail)

    def stop(kind: str, at: datetime, *, met: bool = True) -> None:
        clock = running.pop(kind, None)
        if clock is not None:
            done.append(_stop(clock, at, done=met))

    changes = sorted(close_events)
    events: list[tuple[datetime, int, object]] = [(s.at, 1, s) for s in steps]
    events += [(at, 0, kind) for at, kind in changes]
    events.sort(key=lambda e: (e[0], e[1]))
    opened: datetime | None = None
    answered = False
    status = "open"
    for at, _, item in events:
        if isinstance(item, str):
            if item == "close":
                for kind in list(running):
                    stop(kind, at, met=kind in ("resolution",))
                status = "closed"
            else:
                status = "open"
            continue
        assert isinstance(item, Step)
        if item.kind == "client":
            if opened is None:
                opened = at
                start("first_response", at)
                start("resolution", at)
            elif answered:
                start("follow_up", at)
            # Waiting pauses the update clock, so it counts from when the task is open again.
            start("update", at)
            status = "open"
        elif item.kind == "team" and status != "closed" and _to_client(item, config):
            stop("first_response", at)
            stop("follow_up", at)
            stop("update", at)
            answered = True
            status = "waiting"
    for handoff, acked in (*ownership.handoffs, *((ownership.pending, None),)):
        if handoff is None or t.get("handoff_ack") is None:
            continue
        target = t["handoff_ack"]
        assert target is not None
        clock = Clock(
            "handoff_ack",
            handoff.at,
            cal.add(handoff.at, target),
            None,
            "running",
            f"handoff to {handoff.to}",
        )
        if acked is not None:
            done.append(_stop(clock, acked))
        elif handoff is not ownership.pending:
            done.append(_stop(clock, _superseded(ownership, handoff) or handoff.at, done=False))
        elif ownership.status == "closed" and ownership.closed_at is not None:
            done.append(_stop(clock, ownership.closed_at, done=False))
        else:
            running["handoff_ack"] = clock
    if ownership.due is not None:
        set_at, value = ownership.due
        deadline = cal.end_of_day(value) if isinstance(value, date) else cal.add(set_at, value)
        clock = Clock("due", set_at, deadline, None, "running", "explicit deadline")
        if ownership.status == "closed" and ownership.closed_at is not None:
            done.append(_stop(clock, ownership.closed_at))
        else:
            running["due"] = clock
    return done + list(running.values())


def _superseded(ownership: Ownership, handoff: object) -> datetime | None:
    """When the next change of owner replaced an unacknowledged handoff."""
    later = [h.at for h, _ in ownership.handoffs if h.at > getattr(handoff, "at", h.at)]
    owner_changes = [
        e.at
        for e in ownership.events
        if e.kind in ("owner", "handoff") and e.at > getattr(handoff, "at", e.at)
    ]
    candidates = later + owner_changes
    return min(candidates) if candidates else None


def _to_client(step: Step, config: Config) -> bool:
    m = step.message
    return any(not config.is_team_address(a.email) for a in (*m.to, *m.cc))
