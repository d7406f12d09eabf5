"""Reports for managers (SPEC 6.2, 6.3, 7, 8, 10): `orphans`, `map`, `sla report`, and
`recompute`, which replays every task under the current config and shows what changes.

Each command reads the store (the only module that writes SQL), shapes plain dicts, and
prints them as JSON or as a table; the same dict feeds both.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from maildaemon import ledger, reports, views
from maildaemon.cli import App, cli, emit_json, json_option, listing, pass_app, task_objects
from maildaemon.clocks import sla_for
from maildaemon.config import Config
from maildaemon.errors import UserError
from maildaemon.ledger import change_lines, recompute_changes
from maildaemon.rows import iso, parse_iso

NO_CLIENT = "(no client)"
LIVE = reports.LIVE
ORPHAN_KEYS = ("id", "client", "status", "due", "orphan_reason", "command", "subject")
COVERED_KEYS = ("id", "client", "owner", "covered_by", "away_until", "due", "subject")


@cli.command()
@json_option
@pass_app
def orphans(app: App, as_json: bool) -> None:
    """Orphaned open and waiting tasks with the reason and the command to act on each;
    then the tasks of people away with a cover (not orphaned, but worth seeing)."""
    config, now = app.config, app.now
    day = reports.today(config, now)
    live = views.sort_tasks(t for t in task_objects(app) if t["status"] in LIVE)
    orphaned = [{**t, "command": reports.suggest(config, t, day)} for t in live if t["orphaned"]]
    covered = []
    for t in live:
        p = config.person_by_name(t["owner"]) if t["owner"] else None
        if p and p.away and p.away.cover and p.is_away(day) and not t["orphaned"]:
            covered.append({**t, "covered_by": p.away.cover, "away_until": str(p.away.until)})
    if as_json:
        emit_json({"orphaned": orphaned, "covered": covered})
        return
    click.echo(f"Orphaned ({len(orphaned)}):")
    rows = [_cells({**t, "due": views.due_cell(t, now)}, *ORPHAN_KEYS) for t in orphaned]
    heads = ("ID", "CLIENT", "STATUS", "DUE", "REASON", "ACT", "SUBJECT")
    click.echo(_indent(views.table(rows, heads, wrap_last=50)) if rows else "  none")
    click.echo(f"\nCovered: owner away, a cover stands in ({len(covered)}):")
    rows = [_cells({**t, "due": views.due_cell(t, now)}, *COVERED_KEYS) for t in covered]
    heads = ("ID", "CLIENT", "OWNER", "COVER", "AWAY UNTIL", "DUE", "SUBJECT")
    click.echo(_indent(views.table(rows, heads, wrap_last=50)) if rows else "  none")


def _cells(obj: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    return tuple("-" if obj[k] is None else str(obj[k]) for k in keys)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _map_cell(cell: Mapping[str, Any]) -> str:
    text = cell["owner"] or "-"
    if cell["hole"] is not None:
        text += " HOLE"
    elif cell["covered_by"] is not None:
        text += f" (away; {cell['covered_by']} covers)"
    return text + (f" [{cell['open_tasks']}]" if cell["open_tasks"] else "")


@cli.command("map")
@json_option
@pass_app
def map_(app: App, as_json: bool) -> None:
    """The responsibility map: clients by stages, the owner of each cell, its open and
    waiting tasks, and the holes (no owner, or an owner inactive or away with no cover)."""
    config = app.config
    if not config.stages or not config.clients:
        raise UserError("no map to show: the config needs [stages] order and [[clients]] with map")
    board = reports.responsibility_map(config, task_objects(app), reports.today(config, app.now))
    if as_json:
        emit_json(board)
        return
    rows = [
        (
            r["client"],
            *(_map_cell(r["cells"][s]) for s in board["stages"]),
            str(r["unstaged_tasks"]) if r["unstaged_tasks"] else "-",
        )
        for r in board["clients"]
    ]
    click.echo(views.table(rows, ("CLIENT", *(s.upper() for s in board["stages"]), "NO STAGE")))
    click.echo("[n]: open and waiting tasks in the cell")
    click.echo(f"\nHoles ({len(board['holes'])}): work there will be orphaned")
    for h in board["holes"]:
        click.echo(f"  {h['client']} / {h['stage']}: {h['reason']}")
    if board["covered"]:
        click.echo(f"\nCovered ({len(board['covered'])}):")
        for c in board["covered"]:
            click.echo(
                f"  {c['client']} / {c['stage']}: {c['owner']} is away until "
                f"{c['away_until']}, covered by {c['covered_by']}"
            )


# -- sla report (SPEC 7) ----------------------------------------------------------------------


def _parse_since(config: Config, value: str) -> datetime:
    """An ISO date (midnight in daemon.timezone) or datetime (UTC if no offset)."""
    try:
        if len(value.strip()) == 10:
            day = date.fromisoformat(value.strip())
            return datetime.combine(day, time(0), ZoneInfo(config.daemon.timezone))
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date or time; e.g. 2026-11-01 or 2026-11-01T09:00:00Z",
            param_hint="--since",
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo("UTC"))


def _hours(td: timedelta) -> float:
    return round(td.total_seconds() / 3600, 2)


def sla_report(
    config: Config,
    clocks: Sequence[Mapping[str, Any]],
    clients: Sequence[str],
    since: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """Per client: outcomes of clocks that ended in [since, now] per kind, with the median
    business hours from start to stop (met and missed), and the clocks overdue at ``now``.

    Clocks are taken as of ``now``: one started later is left out; one stopped later was
    still running then.
    """
    report = []
    for name in clients:
        sla = sla_for(config, None if name == NO_CLIENT else name)
        cal = sla.calendar
        kinds: dict[str, dict[str, Any]] = {}
        spans: dict[str, list[float]] = {}
        overdue = []
        for c in clocks:
            if (c["client"] or NO_CLIENT) != name:
                continue
            started, due = parse_iso(c["started_at"]), parse_iso(c["due_at"])
            stopped = parse_iso(c["stopped_at"])
            assert started is not None and due is not None
            if started > now:
                continue
            if stopped is not None and stopped <= now:
                if stopped < since:
                    continue
                k = kinds.setdefault(c["kind"], {"met": 0, "missed": 0, "void": 0})
                k[c["outcome"]] = k.get(c["outcome"], 0) + 1
                if c["outcome"] in ("met", "missed"):
                    spans.setdefault(c["kind"], []).append(_hours(cal.between(started, stopped)))
            elif due < now:
                late = _hours(cal.between(due, now))
                keys = ("task_id", "subject", "owner", "kind", "started_at", "due_at")
                overdue.append({**{k: c[k] for k in keys}, "overdue_business_hours": late})
        for kind, k in kinds.items():
            hours = spans.get(kind)
            k["median_business_hours"] = round(statistics.median(hours), 2) if hours else None
        overdue.sort(key=lambda o: (o["due_at"], o["task_id"]))
        report.append(
            {
                "client": name,
                "tier": sla.tier,
                "calendar": sla.calendar_name,
                "clocks": dict(sorted(kinds.items())),
                "overdue": overdue,
            }
        )
    return report


@cli.group()
def sla() -> None:
    """SLA outcomes (SPEC 7)."""


@sla.command("report")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client.")
@click.option(
    "--since",
    metavar="DATE",
    help="Clocks that ended from this date or time on (default: 30 days before now).",
)
@json_option
@pass_app
def sla_report_cmd(app: App, client_name: str | None, since: str | None, as_json: bool) -> None:
    """Per client: met and missed per clock for clocks that ended since --since, the median
    time to stop in the client's business hours, and what is overdue now."""
    config, now = app.config, app.now
    start = _parse_since(config, since) if since else now - timedelta(days=30)
    if start > now:
        raise UserError(f"--since {since} is after now ({iso(now)})")
    if client_name is not None:
        found = config.client_by_name(client_name)
        if found is None:
            clients = listing(c.name for c in config.clients)
            raise UserError(f"unknown client {client_name!r}; configured: {clients}")
        names = [found.name]
    else:
        names = [c.name for c in config.clients]
    clocks = app.store.clock_rows(stopped_since=start)
    if client_name is None and any(c["client"] is None for c in clocks):
        names.append(NO_CLIENT)
    report = sla_report(config, clocks, names, start, now)
    if as_json:
        emit_json({"since": iso(start), "until": iso(now), "clients": report})
        return
    click.echo(f"SLA clocks that ended {iso(start)} .. {iso(now)}")
    for r in report:
        click.echo(f"\n{r['client']} (tier {r['tier']}, calendar {r['calendar']})")
        rows = [
            (kind, *_cells(k, "met", "missed", "void", "median_business_hours"))
            for kind, k in r["clocks"].items()
        ]
        if rows:
            heads = ("CLOCK", "MET", "MISSED", "VOID", "MEDIAN BUSINESS HOURS")
            click.echo(_indent(views.table(rows, heads)))
        else:
            click.echo("  no clocks ended")
        for o in r["overdue"]:
            click.echo(
                f"  overdue now: #{o['task_id']} {o['kind']} due {o['due_at']} "
                f"({o['overdue_business_hours']}h late; owner {o['owner'] or 'none'}) "
                f"{o['subject'] or '(no subject)'}"
            )


# -- recompute (SPEC 6.3, 11) -----------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@json_option
@pass_app
def recompute(app: App, dry_run: bool, as_json: bool) -> None:
    """Replay every task under the current config and rules; print what changes, then
    write it (SPEC 6.3). Run it after editing the config."""
    store, config = app.store, app.config
    stored, rows = store.load_stored()
    current = store.task_row_values()
    roots, aliases, commands = store.task_roots(), store.aliases(), store.commands()
    plan = ledger.plan(
        stored, rows, current, roots, aliases, config, app.now, commands, store.repairs()
    )
    changes = recompute_changes(plan.writes, current, store.clocks_by_task())
    ids = {c["id"] for c in changes if c["id"] is not None}
    new = sum(1 for c in changes if c["field"] == "new_task")
    verb = "would change" if dry_run else "change"
    extra = f", {new} new task(s)" if new else ""
    click.echo(f"{len(ids)} task(s) {verb}{extra}", err=True)
    if as_json:
        emit_json(changes)
    else:
        for line in change_lines(changes):
            click.echo(line)
    if not dry_run and plan.writes:
        store.write_derived(plan.writes)
        written = len(plan.writes.changed_tasks) + len(plan.writes.new_tasks)
        click.echo(f"wrote {written} task row(s) under the current config", err=True)
