"""The morning digest (SPEC 9): who gets one today, and what is in it.

Pure: the config, the tasks as SPEC 10 objects, their running clocks, the inboxes' sync
state, the failed deliveries and ``now`` in; `Digest` values out. `digest_render` turns a
digest into text, HTML and a MIME message; `outgoing` claims and delivers them.

Every list is capped at `LIMIT` lines with the command that shows the rest: a digest is read
in a mail client, and a thousand-line email helps nobody. Counts are always complete.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from maildaemon import reports
from maildaemon.clocks import sla_for
from maildaemon.config import Config, Person
from maildaemon.rows import iso, parse_iso

LIMIT = 50  # lines per section; the rest is counted and reachable by the section's command
AT_RISK = timedelta(hours=4)  # business time ahead in which a deadline makes a task "at risk"
STALE_SYNC = timedelta(minutes=30)  # an inbox is failing after max(3 x poll_interval, this)
NO_CLIENT = "(no client)"

CLOCK_LABELS = {
    "first_response": "first response",
    "follow_up": "follow-up",
    "update": "update",
    "handoff_ack": "handoff acknowledgement",
    "resolution": "resolution",
    "due": "deadline",
}


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a digest is made of, read from the store by the caller."""

    tasks: Sequence[Mapping[str, Any]]  # open and waiting tasks as SPEC 10 objects
    running: Mapping[int, tuple[str, str]] = field(default_factory=dict)  # id: (clock, due_at)
    inboxes: Sequence[Mapping[str, Any]] = ()  # name, last_sync_at, last_error, last_error_at
    failed: Sequence[Mapping[str, Any]] = ()  # deliveries that failed (see outgoing)


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    items: tuple[dict[str, Any], ...]  # at most LIMIT
    total: int
    more: str | None = None  # the command that lists them all, when some are left out


@dataclass(frozen=True, slots=True)
class Digest:
    kind: str  # "personal" | "team"
    person: str
    email: str
    day: date  # the recipient's local day
    subject: str
    sections: tuple[Section, ...]
    load: tuple[dict[str, Any], ...] = ()  # team: open tasks per owner
    board: dict[str, Any] | None = None  # team: the responsibility map (SPEC 8)

    @property
    def empty(self) -> bool:
        return not any(s.total for s in self.sections)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


# -- text hygiene -----------------------------------------------------------------------------


def clean(text: str | None, limit: int = 200) -> str:
    """One line of text taken from mail, safe to show anywhere: control and format
    characters (CR, LF, TAB, bidi overrides) become spaces, runs of space one, cut to
    ``limit``. HTML escaping is the renderer's job on top of this."""
    if not text:
        return ""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat in ("Cc", "Cf", "Zl", "Zp") else ch)
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def day_label(day: date) -> str:
    """``Tue 24 Nov``."""
    return f"{day:%a} {day.day} {day:%b}"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{max(1, seconds // 60)}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _when(due: datetime, now: datetime, tz: ZoneInfo) -> str:
    """A deadline as its reader thinks of it: ``overdue by 3h``, ``today 14:00``,
    ``Wed 25 Nov 09:00`` (in the reader's zone)."""
    if now > due:
        return f"overdue by {_span((now - due).total_seconds())}"
    local, today = due.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        return f"today {local:%H:%M}"
    if local.date() == today + timedelta(days=1):
        return f"tomorrow {local:%H:%M}"
    return f"{day_label(local.date())} {local:%H:%M}"


# -- who, and when ----------------------------------------------------------------------------


def local_day(person: Person, now: datetime) -> date:
    return now.astimezone(ZoneInfo(person.timezone)).date()


def available(person: Person, day: date) -> bool:
    """Active and not away on ``day``: nothing is sent to anyone else (SPEC 9)."""
    return person.active and not person.is_away(day)


def kinds_for(config: Config, person: Person, day: date) -> tuple[str, ...]:
    """The digests ``person`` gets on ``day`` (their local day), before `send_empty`."""
    if not available(person, day):
        return ()
    kinds = ("personal",) if person.digest else ()
    return (*kinds, "team") if person.manager else kinds


def due_day(config: Config, person: Person, now: datetime) -> date | None:
    """The local day whose digest time has come for ``person`` as of ``now``: today in
    their zone when it is a digest day and `digest.time` has passed; else None. A daemon
    that was down at the digest time therefore catches up later the same day, never the
    next (the claim per day makes it once)."""
    local = now.astimezone(ZoneInfo(person.timezone))
    if local.weekday() not in config.digest.days or local.time() < config.digest.time:
        return None
    return local.date()


# -- building ---------------------------------------------------------------------------------


class _Index:
    """The tasks grouped once for every digest built from them."""

    def __init__(self, config: Config, inputs: Inputs, now: datetime) -> None:
        self.config, self.inputs, self.now = config, inputs, now
        self.now_iso = iso(now) or ""
        self.by_owner: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self.by_pending: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for t in inputs.tasks:
            if t["status"] not in reports.LIVE:
                continue
            if t["owner"] is not None:
                self.by_owner[t["owner"]].append(t)
            p = t["pending_handoff"]
            if p is not None and p["to"] is not None:
                self.by_pending[p["to"]].append(t)

    def line(self, t: Mapping[str, Any], tz: ZoneInfo, **extra: Any) -> dict[str, Any]:
        """One task as a digest line: id, client, subject, age, what is due when, who wrote
        last (everything from mail cleaned to one line)."""
        due_at = parse_iso(t["due_at"])
        clock = self.inputs.running.get(t["id"])
        label = CLOCK_LABELS.get(clock[0], clock[0]) if clock else "due"
        due = f"{label} {_when(due_at, self.now, tz)}" if due_at is not None else ""
        return {
            "id": t["id"],
            "client": clean(t["client"], 60) or None,
            "subject": clean(t["subject"], 120) or "(no subject)",
            "owner": t["owner"],
            "status": t["status"],
            "age": _span((self.now - (parse_iso(t["opened_at"]) or self.now)).total_seconds()),
            "due_at": t["due_at"],
            "due": due,
            "overdue": bool(t["overdue"]),
            "last_from": clean(t.get("last_from"), 60) or None,
            **extra,
        }


def _section(
    key: str,
    title: str,
    tasks: Sequence[Mapping[str, Any]],
    make: Any,
    more: str,
) -> Section:
    shown = tuple(make(t) for t in tasks[:LIMIT])
    return Section(key, title, shown, len(tasks), more if len(tasks) > LIMIT else None)


def _due_key(t: Mapping[str, Any]) -> tuple[str, int]:
    return (t["due_at"] or "9999", t["id"])


def covering(config: Config, day: date) -> dict[str, str]:
    """People away on ``day`` whose cover is available: owner -> cover."""
    out = {}
    for p in config.people:
        if p.active and p.is_away(day) and p.away is not None and p.away.cover:
            cover = reports.stand_in(config, p.away.cover, day)
            if cover is not None:
                out[p.name] = cover
    return out


def personal(
    config: Config, person: Person, index: _Index, day: date, covers: Mapping[str, str]
) -> Digest:
    """SPEC 9 personal: my overdue tasks, then due today, then handoffs waiting for my
    acknowledgement, then my tasks waiting on the client. The tasks of people I cover for
    while they are away count as mine, marked with whom I cover for."""
    tz = ZoneInfo(person.timezone)
    start = datetime.combine(day, datetime.min.time(), tz)
    day_from, day_to = iso(start) or "", iso(start + timedelta(days=1)) or ""
    mine: list[Mapping[str, Any]] = list(index.by_owner.get(person.name, ()))
    for owner, cover in covers.items():
        if cover == person.name:
            mine.extend(index.by_owner.get(owner, ()))
    pending_ids = {t["id"] for t in index.by_pending.get(person.name, ())}
    overdue, today, waiting = [], [], []
    for t in mine:
        if t["id"] in pending_ids:
            continue  # listed once, as a handoff to acknowledge
        due = t["due_at"]
        if t["overdue"]:
            overdue.append(t)
        elif due is not None and day_from <= due < day_to and t["status"] == "open":
            today.append(t)
        elif t["status"] == "waiting":
            waiting.append(t)
    handoffs = sorted(
        index.by_pending.get(person.name, ()), key=lambda t: t["pending_handoff"]["due_at"] or ""
    )
    overdue.sort(key=_due_key)
    today.sort(key=_due_key)
    waiting.sort(key=lambda t: (t["last_activity_at"], t["id"]))

    def line(t: Mapping[str, Any]) -> dict[str, Any]:
        extra = {}
        if t["owner"] != person.name and t["owner"] in covers:
            extra["covering_for"] = t["owner"]
        p = t["pending_handoff"]
        if p is not None and p["to"] == person.name:
            extra["handoff_from"] = p["from"]
        return index.line(t, tz, **extra)

    me = person.name
    sections = (
        _section("overdue", "Overdue", overdue, line, f"maildaemon tasks --overdue --owner {me}"),
        _section("today", "Due today", today, line, f"maildaemon tasks --owner {me}"),
        _section(
            "handoffs", "Handoffs waiting for you", handoffs, line, f"maildaemon tasks --owner {me}"
        ),
        _section(
            "waiting",
            "Waiting on the client",
            waiting,
            line,
            f"maildaemon tasks --status waiting --owner {me}",
        ),
    )
    return Digest("personal", person.name, person.email, day, "", sections)


def _failing_inboxes(config: Config, inputs: Inputs, now: datetime) -> list[dict[str, Any]]:
    """Inboxes that failed their last attempt or have not synced for max(3 x poll, 30m)."""
    stale = max(3 * config.daemon.poll_interval, STALE_SYNC)
    rows: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in inputs.inboxes:
        rows[r["inbox"]].append(r)
    out = []
    for inbox in config.inboxes:
        synced = [parse_iso(r["last_sync_at"]) for r in rows.get(inbox.name, ())]
        last_ok = max((s for s in synced if s is not None), default=None)
        errors = [
            (r["last_error_at"], r["last_error"])
            for r in rows.get(inbox.name, ())
            if r["last_error"]
            and (r["last_sync_at"] is None or r["last_error_at"] > r["last_sync_at"])
        ]
        if errors:
            at, error = max(errors)
            reason = f"failing since {at}: {clean(error, 160)}"
        elif last_ok is None:
            reason = "never synced"
        elif now - last_ok > stale:
            reason = f"no successful sync for {_span((now - last_ok).total_seconds())}"
        else:
            continue
        out.append(
            {
                "inbox": inbox.name,
                "last_sync_at": iso(last_ok),
                "reason": reason,
                "command": "maildaemon status",
            }
        )
    return out


def team_sections(
    config: Config, inputs: Inputs, index: _Index, now: datetime
) -> tuple[tuple[Section, ...], tuple[dict[str, Any], ...], dict[str, Any] | None]:
    """SPEC 9 team digest: unowned (oldest first), overdue by client, overdue handoffs,
    orphaned with the reason, at risk within 4 business hours, failing inboxes, failed
    deliveries, open tasks per owner, and the map with its holes. The same for every
    manager; `team` stamps it with each one's day."""
    day = reports.today(config, now)
    tz = ZoneInfo(config.daemon.timezone)
    live = [t for t in inputs.tasks if t["status"] in reports.LIVE]

    cutoffs: dict[str | None, str] = {}

    def at_risk_cutoff(client: str | None) -> str:
        if client not in cutoffs:
            cal = sla_for(config, client).calendar
            cutoffs[client] = iso(cal.add_td(now, AT_RISK)) or ""
        return cutoffs[client]

    def act(t: Mapping[str, Any]) -> dict[str, Any]:
        return index.line(t, tz, command=reports.suggest(config, t, day))

    def look(t: Mapping[str, Any]) -> dict[str, Any]:
        return index.line(t, tz, command=f"maildaemon show {t['id']}")

    unowned = sorted(
        (t for t in live if t["owner"] is None), key=lambda t: (t["opened_at"], t["id"])
    )
    overdue = sorted(
        (t for t in live if t["overdue"]), key=lambda t: (t["client"] or "~", *_due_key(t))
    )
    handoffs = sorted(
        (t for t in live if t["pending_handoff"] is not None and t["pending_handoff"]["overdue"]),
        key=lambda t: (t["pending_handoff"]["due_at"] or "", t["id"]),
    )
    orphaned = sorted(
        (t for t in live if t["orphaned"] and t.get("orphan_reason") != "unowned"),
        key=lambda t: (t["opened_at"], t["id"]),
    )
    at_risk = sorted(
        (
            t
            for t in live
            if not t["overdue"]
            and t["due_at"] is not None
            and t["due_at"] <= at_risk_cutoff(t["client"])
        ),
        key=_due_key,
    )

    def handoff_line(t: Mapping[str, Any]) -> dict[str, Any]:
        p = t["pending_handoff"]
        return index.line(
            t,
            tz,
            handoff_from=p["from"],
            handoff_to=p["to"],
            handoff_due=_when(parse_iso(p["due_at"]) or now, now, tz),
            command=f"maildaemon assign {t['id']} PERSON",
        )

    def orphan_line(t: Mapping[str, Any]) -> dict[str, Any]:
        return index.line(
            t, tz, reason=clean(t.get("orphan_reason")), command=reports.suggest(config, t, day)
        )

    inboxes = _failing_inboxes(config, inputs, now)
    failed = [
        {
            "kind": f["kind"],
            "recipient": f["recipient"],
            "key": f["key"],
            "attempts": f["attempts"],
            "state": f["state"],
            "error": clean(f["last_error"], 160),
            "at": f["last_error_at"],
            "command": "maildaemon status",
        }
        for f in inputs.failed
    ]
    board = (
        reports.responsibility_map(config, live, day) if config.stages and config.clients else None
    )
    holes = [
        {**h, "command": "maildaemon map"} for h in (board["holes"] if board is not None else ())
    ]
    sections = (
        _section("unowned", "Unowned", unowned, act, "maildaemon tasks --unowned"),
        _section("overdue", "Overdue, by client", overdue, look, "maildaemon tasks --overdue"),
        _section("handoffs", "Handoffs not picked up", handoffs, handoff_line, "maildaemon tasks"),
        _section("orphaned", "Orphaned", orphaned, orphan_line, "maildaemon orphans"),
        _section(
            "at_risk", "At risk in the next 4 business hours", at_risk, look, "maildaemon tasks"
        ),
        Section("inboxes", "Inboxes not syncing", tuple(inboxes), len(inboxes)),
        Section("deliveries", "Failed digest and alert deliveries", tuple(failed), len(failed)),
        Section("holes", "Holes in the responsibility map", tuple(holes), len(holes)),
    )
    return sections, _load(config, live, day), board


def _load(
    config: Config, live: Iterable[Mapping[str, Any]], day: date
) -> tuple[dict[str, Any], ...]:
    """Open and waiting tasks per owner, with how many are overdue; everyone on the roster
    who can hold work is listed, with none too."""
    counts: Counter[tuple[str, str]] = Counter()
    for t in live:
        if t["owner"] is not None:
            counts[(t["owner"], t["status"])] += 1
            if t["overdue"]:
                counts[(t["owner"], "overdue")] += 1
    names = [p.name for p in config.people if p.active]
    names += sorted({o for o, _ in counts} - set(names))
    rows: list[dict[str, Any]] = []
    for name in names:
        person = config.person_by_name(name)
        note = None
        if person is None or not person.active:
            note = "inactive"
        elif person.is_away(day) and person.away is not None:
            note = f"away until {person.away.until}"
            if person.away.cover:
                note += f", {person.away.cover} covers"
        rows.append(
            {
                "owner": name,
                "live": counts[(name, "open")] + counts[(name, "waiting")],
                "open": counts[(name, "open")],
                "waiting": counts[(name, "waiting")],
                "overdue": counts[(name, "overdue")],
                "note": note,
            }
        )
    rows.sort(key=lambda r: (-r["live"], r["owner"]))
    return tuple(rows)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def subject_for(d: Digest) -> str:
    """What is inside, e.g. ``3 overdue, 2 handoffs for you — Tue 24 Nov``."""
    when = day_label(d.day)
    totals = {s.key: s.total for s in d.sections}
    if d.kind == "personal":
        parts = [
            _count(totals["overdue"], "overdue", "overdue"),
            _count(totals["today"], "due today", "due today"),
            _count(totals["handoffs"], "handoff"),
            _count(totals["waiting"], "waiting", "waiting"),
        ]
        shown = [p for p, n in zip(parts, totals.values(), strict=True) if n]
        return f"{', '.join(shown)} for you — {when}" if shown else f"Nothing due for you — {when}"
    names = {
        "unowned": ("unowned", "unowned"),
        "overdue": ("overdue", "overdue"),
        "handoffs": ("stuck handoff", None),
        "orphaned": ("orphaned", "orphaned"),
        "at_risk": ("at risk", "at risk"),
        "inboxes": ("inbox failing", "inboxes failing"),
        "deliveries": ("failed delivery", "failed deliveries"),
        "holes": ("map hole", None),
    }
    shown = [_count(totals[k], *names[k]) for k in names if totals.get(k)]
    return f"Team: {', '.join(shown)} — {when}" if shown else f"Team: all clear — {when}"


def build(
    config: Config,
    inputs: Inputs,
    now: datetime,
    wanted: Iterable[tuple[Person, str, date]] | None = None,
) -> list[Digest]:
    """The digests of ``wanted`` (person, kind, their local day); by default everyone's of
    today (`kinds_for`), empty ones included: `send_empty` is the caller's decision."""
    if wanted is None:
        wanted = [
            (p, kind, day)
            for p in config.people
            for day in (local_day(p, now),)
            for kind in kinds_for(config, p, day)
        ]
    wanted = list(wanted)
    index = _Index(config, inputs, now)
    covers = covering(config, reports.today(config, now))
    team: tuple[tuple[Section, ...], tuple[dict[str, Any], ...], dict[str, Any] | None] | None
    team = None
    out = []
    for person, kind, day in wanted:
        if kind == "personal":
            d = personal(config, person, index, day, covers)
        else:
            if team is None:
                team = team_sections(config, inputs, index, now)
            sections, load, board = team
            d = Digest("team", person.name, person.email, day, "", sections, load, board)
        out.append(_with_subject(d))
    return out


def _with_subject(d: Digest) -> Digest:
    return replace(d, subject=subject_for(d))


def as_json(d: Digest) -> dict[str, Any]:
    """The digest as `digest --json` prints it."""
    return {
        "kind": d.kind,
        "to": d.person,
        "email": d.email,
        "day": d.day.isoformat(),
        "subject": d.subject,
        "empty": d.empty,
        "sections": {
            s.key: {"title": s.title, "total": s.total, "more": s.more, "items": list(s.items)}
            for s in d.sections
        },
        **({"load": list(d.load), "map": d.board} if d.kind == "team" else {}),
    }
