"""`maildaemon digest` (SPEC 9, 10): preview, write or send today's digests.

The daemon sends them by itself at `digest.time`; this command is for looking at them
(`--preview`, the default; `--html`; `--json`), reproducing one (`--now`), and sending by
hand (`--send`: today's not yet claimed, with the daemon's once-a-day claim; `--force`:
again, as a new message).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from maildaemon import digest, digest_render, outgoing, reports
from maildaemon.cli import App, cli, emit_json, json_option, listing, pass_app, task_objects
from maildaemon.config import Person
from maildaemon.errors import ConfigError, UserError


def _wanted(app: App, to: str | None) -> list[tuple[Person, str, date]]:
    """Today's digests (each person's local day) of everyone, or of one person. With
    ``--to`` a digest is previewed even for someone away or inactive (it is not sent)."""
    config, now = app.config, app.now
    if to is None:
        people = list(config.people)
    else:
        person = config.resolve_person(to)
        if person is None:
            raise UserError(
                f"unknown person {to!r}; the roster: {listing(p.name for p in config.people)}"
            )
        people = [person]
    out = []
    for p in people:
        day = digest.local_day(p, now)
        kinds = digest.kinds_for(config, p, day)
        if to is not None and not kinds:
            why = "inactive" if not p.active else "away" if p.is_away(day) else "digest = false"
            click.echo(f"maildaemon: {p.name} gets no digest today ({why})", err=True)
            kinds = ("personal", "team") if p.manager else ("personal",)
        out += [(p, kind, day) for kind in kinds]
    return out


def _html_path(base: Path, d: digest.Digest, several: bool) -> Path:
    if not several:
        return base
    return base.with_name(f"{base.stem}-{d.person}-{d.kind}{base.suffix or '.html'}")


@cli.command("digest")
@click.option("--preview", is_flag=True, help="Print the text version (the default).")
@click.option(
    "--html",
    "html_path",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML version to PATH (several digests: PATH-PERSON-KIND.html).",
)
@click.option("--to", "to", metavar="PERSON", help="Only this person's digests.")
@click.option(
    "--send", is_flag=True, help="Deliver today's digests not yet sent (once a day, as the daemon)."
)
@click.option("--force", is_flag=True, help="With --send: send again, as a new message.")
@json_option
@pass_app
def digest_cmd(
    app: App,
    preview: bool,
    html_path: Path | None,
    to: str | None,
    send: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Render today's digests: each person's own (overdue, due today, handoffs to
    acknowledge, waiting on the client) and the managers' team digest.

    Without options, prints the text version of every digest that would be sent today.
    --send claims and delivers those not sent yet today (the daemon's claim: never twice);
    --force sends them again. Exit 3 when a delivery failed.
    """
    if force and not send:
        raise click.UsageError("--force goes with --send")
    store, config, now = app.store, app.config, app.now
    wanted = _wanted(app, to)
    tasks = task_objects(app, reports.LIVE)
    if send:
        if config.digest.delivery is None:
            raise ConfigError(
                f"{app.config_path}: [digest] has no delivery; add delivery = {{ outbox = "
                '"outbox" }} or an smtp table to send digests'
            )
        if not force:
            wanted = outgoing.unclaimed(store, wanted)
            wanted = [w for w in wanted if digest.available(w[0], w[2])]
        claimed = outgoing.send_digests(store, config, now, wanted=wanted, tasks=tasks, force=force)
        results = outgoing.flush(store, config, now, retry_now=True)
        for r in results:
            mark = "sent" if r.ok else "FAILED"
            click.echo(f"{mark}: {r.kind} digest to {r.recipient} ({r.key}): {r.detail}", err=True)
        if not claimed and not results:
            click.echo("nothing to send: today's digests are sent or empty", err=True)
        if any(not r.ok for r in results):
            sys.exit(3)
        return
    built = digest.build(config, outgoing.read_inputs(store, config, now, tasks), now, wanted)
    shown = [d for d in built if to is not None or not d.empty or config.digest.send_empty]
    for d in built:
        if d not in shown:
            click.echo(f"maildaemon: no {d.kind} digest for {d.person}: nothing to see", err=True)
    if html_path is not None:
        for d in shown:
            path = _html_path(html_path, d, len(shown) > 1)
            path.write_text(
                digest_render.html(d, outgoing.local_time(config, d.person, now)), encoding="utf-8"
            )
            click.echo(f"wrote {path} ({d.kind} digest for {d.person})", err=True)
    if as_json:
        emit_json([digest.as_json(d) for d in shown])
    elif html_path is None or preview:
        for n, d in enumerate(shown):
            if n:
                click.echo("\n" + "-" * 72 + "\n")
            click.echo(f"To: {d.person} <{d.email}>")
            click.echo(f"Subject: {d.subject}\n")
            click.echo(
                digest_render.text(d, outgoing.local_time(config, d.person, now)).rstrip("\n")
            )
