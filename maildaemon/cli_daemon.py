"""`maildaemon run`: the long-running daemon (SPEC 10); the work is in `daemon.py`."""

from __future__ import annotations

import logging

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
