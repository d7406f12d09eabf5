"""Outgoing mail (SPEC 9): which digests and alerts are due, their once-only claims, and
their delivery with retries. The I/O shell around the pure `digest` and `digest_render`.

The daemon calls `tick` every 30 seconds; `digest --send` calls `send_digests` and `flush`.
Deciding "due" here instead of with `schedule.every().day.at()` is what makes the rest
simple: each person's digest is due once their own zone's clock passes `digest.time` on a
digest day, so time zones, DST changes and a daemon that was down at the digest time (it
catches up the same local day, never the next) need no special case, and the claim per
(person, kind, local day) makes it once.
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from maildaemon import claims, delivery, digest, digest_render, reports, views
from maildaemon.clocks import sla_for
from maildaemon.config import Config, Person
from maildaemon.rows import iso, parse_iso
from maildaemon.store import Store

log = logging.getLogger("maildaemon.outgoing")

RETRY_CAP = timedelta(hours=1)
GIVE_UP = timedelta(hours=24)  # a claim still failing a day later is expired (and reported)
ALERT_NEAR = timedelta(hours=1)  # business time left when the owner is alerted
ALERT_WINDOW = timedelta(hours=24)  # breaches older than this are never alerted (backfills)
FAILURES_SHOWN = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Sent:
    kind: str
    recipient: str
    key: str
    subject: str
    ok: bool
    detail: str  # where it went, or the error


# -- addresses and ids ------------------------------------------------------------------------


def sender(config: Config) -> str:
    d = config.digest.delivery
    if d is not None and d.smtp is not None:
        return d.smtp.sender
    domain = config.team.domains[0] if config.team.domains else "localhost"
    return f"maildaemon@{domain}"


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:60] or "x"


def new_message_id(config: Config, kind: str, recipient: str, key: str) -> str:
    """Fixed for a claim: it is stored with it and reused by every retry."""
    domain = sender(config).rpartition("@")[2] or "localhost"
    return f"<md.{_token(kind)}.{_token(recipient)}.{_token(key)}.{uuid.uuid4().hex[:12]}@{domain}>"


# -- reading what a digest needs --------------------------------------------------------------


def read_inputs(
    store: Store, config: Config, now: datetime, tasks: Sequence[dict[str, Any]] | None = None
) -> digest.Inputs:
    """The store's state as of ``now`` for `digest.build`. ``tasks``: SPEC 10 objects the
    caller derived itself (the CLI with --now in the past); else the stored ones."""
    if tasks is None:
        rows = store.task_json(
            now,
            views.unavailable_owners(config, now),
            [p.name for p in config.people],
            reports.LIVE,
        )
        # One decode of one array: a third faster than a json.loads per task.
        tasks = json.loads("[" + ",".join(text for _, text in rows) + "]")
        del rows
    return digest.Inputs(
        tasks=tasks,
        running=claims.earliest_running(store),
        inboxes=store.source_rows(),
        failed=claims.failures(store, now - FAILURES_SHOWN),
    )


def due_digests(store: Store, config: Config, now: datetime) -> list[tuple[Person, str, date]]:
    """(person, kind, local day) whose digest time has come today and that nobody claimed."""
    wanted = []
    for p in config.people:
        day = digest.due_day(config, p, now)
        if day is None:
            continue
        wanted += [(p, kind, day) for kind in digest.kinds_for(config, p, day)]
    return unclaimed(store, wanted)


def unclaimed(
    store: Store, wanted: list[tuple[Person, str, date]]
) -> list[tuple[Person, str, date]]:
    """Those of ``wanted`` (person, kind, local day) that nobody claimed yet."""
    if not wanted:
        return []
    done = claims.claimed(store, "%", {d.isoformat() for _, _, d in wanted})
    return [(p, k, d) for p, k, d in wanted if (k, p.name, d.isoformat()) not in done]


# -- claiming ---------------------------------------------------------------------------------


def claim_digests(
    store: Store, config: Config, built: Iterable[digest.Digest], now: datetime, *, force: bool
) -> list[digest.Digest]:
    """Render and claim each digest; the ones this call claimed (to send). An empty digest
    without `send_empty` is claimed as `empty`, so the day is settled and not rebuilt."""
    out = []
    for d in built:
        key = d.day.isoformat()
        mid = new_message_id(config, d.kind, d.person, key)
        skip = d.empty and not config.digest.send_empty and not force
        raw = b"" if skip else render(config, d, mid, now)
        got = claims.claim(
            store,
            kind=d.kind,
            recipient=d.person,
            key=key,
            message_id=mid,
            subject=d.subject,
            addresses=[d.email],
            raw=raw,
            at=now,
            forced=force,
            state="empty" if skip else "claimed",
        )
        if got is not None and not skip:
            out.append(d)
            log.info("digest claimed: %s for %s, %s: %s", d.kind, d.person, key, d.subject)
    return out


def local_time(config: Config, name: str, now: datetime) -> datetime:
    """``now`` on ``name``'s clock (for "sent at" lines)."""
    person = config.person_by_name(name)
    return now.astimezone(ZoneInfo(person.timezone if person else config.daemon.timezone))


def render(config: Config, d: digest.Digest, message_id: str, now: datetime) -> bytes:
    person = config.person_by_name(d.person)
    name = person.name if person else d.person
    sent = local_time(config, d.person, now)
    return digest_render.message(
        subject=d.subject,
        sender=f"maildaemon <{sender(config)}>",
        to=[(name, d.email)],
        message_id=message_id,
        date=now,
        body_text=digest_render.text(d, sent),
        body_html=digest_render.html(d, sent),
    )


def send_digests(
    store: Store,
    config: Config,
    now: datetime,
    *,
    wanted: list[tuple[Person, str, date]] | None = None,
    tasks: Sequence[dict[str, Any]] | None = None,
    force: bool = False,
) -> list[digest.Digest]:
    """Build, render and claim the digests of ``wanted`` (default: those due now and
    unclaimed). Delivery is `flush`'s job."""
    if wanted is None:
        wanted = due_digests(store, config, now)
    if not wanted:
        return []
    built = digest.build(config, read_inputs(store, config, now, tasks), now, wanted)
    return claim_digests(store, config, built, now, force=force)


# -- alerts (SPEC 9) --------------------------------------------------------------------------


def check_alerts(store: Store, config: Config, now: datetime) -> int:
    """Claim the alerts due now: the owner's when a running clock has 1 business hour left,
    the managers' when one is breached (only breaches of the last 24 hours: a backfill of
    old mail alerts nobody). At most one of each per clock and recipient. Returns how many
    were claimed."""
    if not config.alerts.enabled:
        return 0
    cals: dict[str | None, Any] = {}

    def calendar(client: str | None) -> Any:
        if client not in cals:
            cals[client] = sla_for(config, client).calendar
        return cals[client]

    horizon = max(
        [calendar(c.name).add_td(now, ALERT_NEAR) for c in config.clients]
        + [calendar(None).add_td(now, ALERT_NEAR)]
    )
    rows = claims.running_clocks(store, now - ALERT_WINDOW, horizon)
    if not rows:
        return 0
    day = reports.today(config, now)
    managers = [p for p in config.people if p.manager and digest.available(p, day)]
    wanted = []
    for r in rows:
        due = parse_iso(r["due_at"])
        assert due is not None
        key = f"{r['task_id']}:{r['kind']}:{r['started_at']}"
        if due <= now:
            wanted += [("alert-breach", m, key, r) for m in managers]
        elif due <= calendar(r["client"]).add_td(now, ALERT_NEAR):
            who = reports.stand_in(config, r["owner"], day)
            person = config.person_by_name(who) if who else None
            if person is not None:
                wanted.append(("alert-near", person, key, r))
    done = claims.claimed(store, "alert-%", {w[2] for w in wanted})
    # One mail per (alert, person, task): two clocks of one task due together (a first
    # response and a handoff acknowledgement) make one alert; the other clock's claim is
    # kept as `merged` so it never alerts on its own.
    groups: dict[tuple[str, str, int], list[tuple[Person, str, dict[str, Any]]]] = {}
    for kind, person, key, r in wanted:
        if (kind, person.name, key) not in done:
            groups.setdefault((kind, person.name, r["task_id"]), []).append((person, key, r))
    n = 0
    for (kind, name, task_id), members in groups.items():
        person, key, r = members[0]
        subject, body = alert_text(kind, r, now, person, [m[2] for m in members[1:]])
        mid = new_message_id(config, kind, name, key)
        raw = digest_render.message(
            subject=subject,
            sender=f"maildaemon <{sender(config)}>",
            to=[(name, person.email)],
            message_id=mid,
            date=now,
            body_text=body,
        )
        got = claims.claim(
            store,
            kind=kind,
            recipient=name,
            key=key,
            message_id=mid,
            subject=subject,
            addresses=[person.email],
            raw=raw,
            at=now,
            task_id=task_id,
        )
        if got is None:
            continue  # another process claimed it first
        n += 1
        log.info("alert claimed: %s for %s: %s", kind, name, subject)
        for _, other, _ in members[1:]:
            claims.claim(
                store,
                kind=kind,
                recipient=name,
                key=other,
                message_id=new_message_id(config, kind, name, other),
                subject=f"in {mid}",
                addresses=[person.email],
                raw=b"",
                at=now,
                task_id=task_id,
                state="merged",
            )
    return n


def alert_text(
    kind: str,
    r: dict[str, Any],
    now: datetime,
    person: Person,
    also: Sequence[dict[str, Any]] = (),
) -> tuple[str, str]:
    """The subject and text of one alert; ``also``: more clocks of the task, due as near."""
    tz = ZoneInfo(person.timezone)
    label = digest.CLOCK_LABELS.get(r["kind"], r["kind"])
    task = f"#{r['task_id']}"
    client = r["client"] or "no client"
    subject = digest.clean(r["subject"], 100) or "(no subject)"
    due = parse_iso(r["due_at"]) or now
    local_due = f"{due.astimezone(tz):%a %d %b %H:%M %Z}"
    if kind == "alert-near":
        title = f"1 business hour left: {task} {label} ({client}) — {subject}"
        lines = [
            f"The {label} of task {task} for {client} is due {local_due}:",
            "about 1 business hour from now in the client's calendar.",
        ]
    else:
        owner = r["owner"] or "nobody"
        title = f"SLA breached: {task} {label} ({client}, {owner}) — {subject}"
        lines = [
            f"The {label} of task {task} for {client} was due {local_due} and is breached.",
            f"Owner: {owner}.",
        ]
    for o in also:
        other = digest.CLOCK_LABELS.get(o["kind"], o["kind"])
        at = parse_iso(o["due_at"]) or now
        lines.append(f"Also its {other}: due {at.astimezone(tz):%a %d %b %H:%M %Z}.")
    lines += [
        "",
        f"Task:    {task} {subject}",
        f"Client:  {client}",
        "",
        f"See why and who:    maildaemon show {r['task_id']}",
        f"Give it to someone: maildaemon assign {r['task_id']} PERSON",
        "",
        "One alert per clock; the morning digest has the full picture.",
    ]
    return title, "\n".join(lines) + "\n"


# -- delivery ---------------------------------------------------------------------------------


def retry_delay(first: timedelta, attempts: int, rand: float) -> timedelta:
    """Exponential backoff with jitter: ``first`` (`digest.retry`, 1m), doubling up to an
    hour."""
    base: timedelta = min(RETRY_CAP, first * (2 ** max(0, attempts - 1)))
    return base * (0.75 + 0.5 * rand)


def flush(
    store: Store,
    config: Config,
    now: datetime,
    *,
    stop: Callable[[], bool] = lambda: False,
    retry_now: bool = False,
) -> list[Sent]:
    """Hand every pending claim to the configured delivery: new ones, ones a crash left
    unsent, and failed ones due for a retry (``retry_now``: all failed ones, as at a start
    or on `digest --send`)."""
    pending = claims.pending(store, now, all_open=retry_now)
    if not pending:
        return []
    how = config.digest.delivery
    results = []
    for c in pending:
        if stop():
            break
        at = now
        claims.mark_sending(store, c.id, at)
        try:
            if how is None:
                raise delivery.DeliveryError("no [digest] delivery is configured")
            where = delivery.deliver(how, c.raw, sender(config), c.addresses, _name(c))
        except delivery.DeliveryError as e:
            attempts = c.attempts + 1
            claimed_at = parse_iso(c.claimed_at) or at
            retry: datetime | None = at + retry_delay(
                config.digest.retry, attempts, random.random()
            )
            if retry is not None and retry - claimed_at > GIVE_UP:
                retry = None
            claims.mark_failed(store, c.id, at, str(e), retry)
            then = f"retry at {iso(retry)}" if retry else "giving up"
            log.warning(
                "%s to %s (%s) failed, attempt %d: %s; %s",
                c.kind, c.recipient, c.key, attempts, e, then,
            )  # fmt: skip
            results.append(Sent(c.kind, c.recipient, c.key, c.subject, False, str(e)))
            continue
        claims.mark_sent(store, c.id, now, where)
        log.info("%s sent to %s (%s): %s", c.kind, c.recipient, c.key, where)
        results.append(Sent(c.kind, c.recipient, c.key, c.subject, True, where))
    return results


def _name(c: claims.Claim) -> str:
    """A stable, filesystem-safe name for the claim (the outbox file name)."""
    mid = c.message_id.strip("<>")
    return _token(mid.partition("@")[0]) + f".{c.id}"


def tick(
    store: Store,
    config: Config,
    now: datetime,
    stop: Callable[[], bool],
    *,
    retry_now: bool = False,
) -> tuple[int, int, list[Sent]]:
    """The daemon's job: claim the digests whose time has come, claim due alerts, then
    deliver everything pending. Returns (digests claimed, alerts claimed, deliveries).
    Without a `[digest] delivery` nothing is claimed: digests and alerts are off."""
    if config.digest.delivery is None:
        return 0, 0, []
    digests = send_digests(store, config, now)
    alerts = check_alerts(store, config, now)
    return len(digests), alerts, flush(store, config, now, stop=stop, retry_now=retry_now)
