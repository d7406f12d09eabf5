"""`maildaemon run`: the long-running daemon (SPEC 10); the work is in `daemon.py`.
`maildaemon backup`: a consistent copy of its database while it runs."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from maildaemon.cli import App, cli, pass_app
from maildaemon.daemon import Daemon
from maildaemon.errors import UserError


@cli.command()
@pass_app
def run(app: App) -> None:
    """The daemon: sync every inbox, keep tasks current, apply retention.

    Each inbox is synced on its own thread every daemon.poll_interval; a failing inbox is
    retried with backoff and shown by `maildaemon status` while the others go on. Logs one
    line per event on stderr. SIGTERM or SIGINT: finish the current step and exit 0.
    SIGHUP: reload the config (a bad file is refused and the running config kept).
    """
    config = app.config
    if not config.inboxes:
        raise UserError(f"no inboxes in {app.config_path}; add an [[inboxes]] table")
    db_path = app.store.path  # opens (and migrates) the database before any thread does
    events = logging.getLogger("maildaemon")
    if events.getEffectiveLevel() > logging.INFO:
        events.setLevel(logging.INFO)  # a daemon's events are its output; -vv adds debug
    Daemon(config, app.config_path, db_path, clock=lambda: app.now).run()


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup(ctx: click.Context, path: Path) -> None:
    """Copy the database consistently into PATH, also while the daemon runs.

    Uses SQLite's online backup: one snapshot, taken without stopping the daemon's
    writes. PATH must not exist (an existing file is never overwritten: exit 1). The copy
    is a plain SQLite file; restore it by stopping the daemon and putting it in place of
    daemon.database (removing the old -wal and -shm files).
    """
    app = ctx.find_object(App)
    assert app is not None
    db_option = ctx.find_root().params.get("db")
    source = Path(db_option) if db_option else app.config.daemon.database
    if not source.exists():
        raise UserError(f"no database at {source}: nothing to back up")
    if path.exists():
        raise UserError(f"{path} exists; backup never overwrites a file")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such folder")
    size = app.store.backup(path)
    click.echo(f"backed up {source} to {path} ({size} bytes)", err=True)
