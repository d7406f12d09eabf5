"""The command line: wires config, sources, store and views together; nothing else.

Exit codes (SPEC 10): 0 ok; 1 user error (click's usage errors included, mapped from 2);
2 config error; 3 operation error. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from maildaemon import __version__, ingest, ledger, views
from maildaemon.config import STARTER_CONFIG, Config, find_config_path, load_config, render_config
from maildaemon.coordination import derive
from maildaemon.errors import ConfigError, MaildaemonError, OperationError, UserError
from maildaemon.rows import iso
from maildaemon.store import Store
from maildaemon.threads import Thread

F = TypeVar("F", bound=Callable[..., Any])
STATUSES = ("open", "waiting", "closed")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"maildaemon: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Maps errors to the exit codes of SPEC 10, also under click's test runner."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        except click.ClickException as e:
            e.show()
            sys.exit(1)
        except ConfigError as e:
            _fail(f"config error: {e}", 2)
        except UserError as e:
            _fail(str(e), 1)
        except OperationError as e:
            _fail(str(e), 3)
        except MaildaemonError as e:
            _fail(str(e), 3)
        sys.exit(rv if isinstance(rv, int) else 0)


class App:
    """What every command needs, loaded on first use."""

    def __init__(self, config_path: str | None, db: str | None, now: datetime | None) -> None:
        self._config_path = config_path
        self._db = db
        self._now = now
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def now(self) -> datetime:
        return self._now or datetime.now(UTC).replace(microsecond=0)

    @property
    def pinned_now(self) -> bool:
        return self._now is not None

    @property
    def config_path(self) -> Path:
        return find_config_path(self._config_path, os.environ)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            path = Path(self._db) if self._db else self.config.daemon.database
            self._store = Store(path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time; e.g. 2026-11-24T16:30:00Z"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def json_option(f: F) -> F:
    """The one shared --json flag of every command that prints data."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def emit_json(data: Any) -> None:
    """JSON on stdout; a list is printed one item per line (fast for 100,000 tasks, and
    still easy to read and to grep)."""
    if isinstance(data, list):
        items = ",\n  ".join(json.dumps(item, ensure_ascii=False) for item in data)
        click.echo(f"[\n  {items}\n]" if data else "[]")
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))


pass_app = click.make_pass_decorator(App)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maildaemon")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $MAILDAEMON_CONFIG, else ./maildaemon.toml).",
)
@click.option("--db", metavar="PATH", help="SQLite database (default: daemon.database).")
@click.option(
    "--now",
    metavar="ISO-8601",
    callback=_parse_now,
    help="Answer as of this moment (UTC if no offset); what is written is stamped with it.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: debug).")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, db: str | None, now: datetime | None, verbose: int
) -> None:
    """maildaemon: shared inboxes become owned tasks with per-client SLAs.

    Reads mail, never changes a mailbox. Start with `maildaemon init`, then
    `maildaemon sync` and `maildaemon tasks`.
    """
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app = App(config_path, db, now)
    ctx.obj = app
    ctx.call_on_close(app.close)


# -- config ------------------------------------------------------------------------------


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_app
def init(app: App, force: bool) -> None:
    """Write a starter config, with comments, to --config or ./maildaemon.toml."""
    path = app.config_path
    if path.exists() and not force:
        raise UserError(f"{path} exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run `maildaemon config check`", err=True)


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@pass_app
def config_check(app: App) -> None:
    """Validate the config and print it with secrets redacted (exit 2 when invalid)."""
    click.echo(render_config(app.config))
    click.echo(f"{app.config_path}: ok", err=True)


# -- ingest ------------------------------------------------------------------------------


def _progress_factory(label: str) -> Callable[[int], ingest.Progress | None] | None:
    """A click progress bar on a terminal only."""
    if not sys.stderr.isatty():
        return None

    def make(total: int) -> ingest.Progress:
        bar = click.progressbar(length=total, label=label, file=sys.stderr)
        bar.__enter__()

        def step(n: int) -> None:
            bar.update(n)
            if bar.pos >= total:
                bar.__exit__(None, None, None)

        return step

    return make


def _report(results: list[ingest.SyncResult]) -> None:
    for r in results:
        line = f"{r.inbox}: {r.seen} read, {r.new} new, {r.quarantined} quarantined"
        if r.error:
            line += f"; error: {r.error}"
        click.echo(line, err=True)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--inbox", default="import", show_default=True, help="Record the mail as seen in this inbox."
)
@pass_app
def import_(app: App, paths: tuple[Path, ...], inbox: str) -> None:
    """Backfill from Maildir folders, mbox files or .eml files (idempotent)."""
    if inbox != "import" and app.config.inbox_by_name(inbox) is None:
        raise UserError(f"unknown inbox {inbox!r}; configured: {_names(app.config)}")
    results = ingest.import_paths(
        app.store,
        app.config,
        list(paths),
        inbox=inbox,
        now=app.now,
        progress_factory=_progress_factory("importing"),
    )
    _report(results)


def _names(config: Config) -> str:
    return listing(i.name for i in config.inboxes)


@cli.command()
@click.option("--inbox", "inbox_name", metavar="NAME", help="Only this inbox.")
@pass_app
def sync(app: App, inbox_name: str | None) -> None:
    """One pass over the configured inboxes, then exit (3 if an inbox failed)."""
    config = app.config
    inboxes = config.inboxes
    if inbox_name is not None:
        found = config.inbox_by_name(inbox_name)
        if found is None:
            raise UserError(f"unknown inbox {inbox_name!r}; configured: {_names(config)}")
        inboxes = (found,)
    if not inboxes:
        raise UserError(f"no inboxes in {app.config_path}; add an [[inboxes]] table")
    results = []
    for inbox in inboxes:
        if inbox.kind == "imap":
            from maildaemon import imap  # imapclient only loads when an inbox needs it

            results.append(
                imap.sync_inbox(
                    app.store,
                    config,
                    inbox,
                    now=app.now,
                    progress_factory=_progress_factory(inbox.name),
                )
            )
            continue
        results.append(
            ingest.sync_local(
                app.store,
                config,
                inbox,
                now=app.now,
                progress_factory=_progress_factory(inbox.name),
            )
        )
    # Mail stored by an interrupted earlier pass (kill -9 between a batch and re-derivation)
    # is in no task yet: re-derive then too.
    if any(r.new or r.located for r in results) or app.store.underived_messages():
        ingest.rederive(
            app.store,
            config,
            app.now,
            fresh=ingest.merge_fresh(results),
            located=ingest.merge_located(results),
        )
    _report(results)
    if any(r.error for r in results):
        sys.exit(3)


# -- reading -----------------------------------------------------------------------------


def task_entries(
    app: App, statuses: Iterable[str] | None = None, *, parse: bool = True
) -> list[tuple[dict[str, Any], str | None]]:
    """Every thread that is a task as of --now, most urgent first, as (object, its JSON).

    Stored tasks come as JSON built by the store; tasks that --now cuts are re-derived
    (their JSON is None). ``statuses`` narrows what is read when --now is not set.
    ``parse=False`` leaves stored tasks as JSON text only (objects empty): for printing.
    """
    store, now, config = app.store, app.now, app.config
    late = store.tasks_active_after(now) if app.pinned_now else set()
    rows = store.task_json(
        now,
        views.unavailable_owners(config, now),
        [p.name for p in config.people],
        None if app.pinned_now else statuses,
    )
    entries: list[tuple[dict[str, Any], str | None]] = []
    for task_id, text in rows:
        if task_id in late:
            derived = derive_task(app, task_id)
            if derived is not None and derived[1]:
                entries.append((derived[0], None))
        else:
            entries.append((json.loads(text) if parse else {}, text))
    if late:
        entries.sort(key=lambda e: views.urgency_key(e[0]))
    return entries


def task_objects(app: App, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every task as of --now as SPEC 10 objects, most urgent first."""
    return [obj for obj, _ in task_entries(app, statuses)]


def derive_task(app: App, task_id: int) -> tuple[dict[str, Any], bool] | None:
    loaded = app.store.load_thread(task_id)
    if not loaded:
        return None
    stored = {s.message.message_id: s for s, _ in loaded}
    thread = Thread(tuple(stored), tuple(j for _, j in loaded))
    commands = app.store.commands(task_id).get(task_id, [])
    state = derive(thread, stored, app.config, app.now, commands)
    if state is None:
        return None
    obj = views.from_state(task_id, state, app.now)
    obj["timeline"] = [views.timeline_entry(e) for e in state.timeline]
    obj["events"] = [views.state_event(e) for e in state.events]
    obj["clocks"] = [views.clock_entry(c, app.now) for c in state.clocks]
    obj["sla"] = {"tier": state.sla, "calendar": state.calendar}
    return obj, state.is_task


def listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "(none)"


def _check_filters(
    config: Config, owner: str | None, client: str | None, stage: str | None
) -> None:
    if owner is not None and owner != "none" and config.resolve_person(owner) is None:
        roster = listing(p.name for p in config.people)
        raise UserError(f"unknown person {owner!r}; the roster: {roster}")
    if client is not None and config.client_by_name(client) is None:
        clients = listing(c.name for c in config.clients)
        raise UserError(f"unknown client {client!r}; configured: {clients}")
    if stage is not None and stage not in config.stages:
        raise UserError(f"unknown stage {stage!r}; configured: {listing(config.stages)}")


def _statuses(value: str) -> set[str]:
    wanted = {s.strip() for s in value.split(",") if s.strip()}
    if "all" in wanted:
        return set(STATUSES)
    bad = wanted - set(STATUSES)
    if bad or not wanted:
        raise click.BadParameter(
            f"{value!r}: choose from open, waiting, closed, all (comma-separated)",
            param_hint="--status",
        )
    return wanted


@cli.command()
@click.option("--unowned", is_flag=True, help="Only tasks nobody owns.")
@click.option("--overdue", is_flag=True, help="Only tasks past their due time.")
@click.option("--orphaned", is_flag=True, help="Only orphaned tasks (SPEC 6.2).")
@click.option("--owner", metavar="PERSON", help="Only tasks this person owns.")
@click.option("--client", metavar="CLIENT", help="Only this client's tasks.")
@click.option("--stage", metavar="STAGE", help="Only tasks in this stage.")
@click.option(
    "--status",
    "status",
    default="open,waiting",
    show_default=True,
    metavar="LIST",
    help="open, waiting, closed or all; comma-separated.",
)
@click.option(
    "--messages",
    "with_messages",
    is_flag=True,
    help="With --json: add every Message-ID of the thread.",
)
@json_option
@pass_app
def tasks(
    app: App,
    unowned: bool,
    overdue: bool,
    orphaned: bool,
    owner: str | None,
    client: str | None,
    stage: str | None,
    status: str,
    with_messages: bool,
    as_json: bool,
) -> None:
    """List tasks, most urgent first: overdue, then by due time, then longest idle."""
    wanted = _statuses(status)
    config = app.config
    _check_filters(config, owner, client, stage)
    stale = app.store.stale_tasks(ledger.derivation_fingerprint(config))
    if stale:
        click.echo(
            f"maildaemon: {stale} task(s) were derived under another config or rules; "
            "run `maildaemon recompute`",
            err=True,
        )
    owner_name = None
    if owner is not None and owner != "none":
        person = config.resolve_person(owner)
        owner_name = person.name if person else owner
    filtering = any((unowned, overdue, orphaned, owner, client, stage)) or app.pinned_now
    parse = filtering or with_messages or not as_json
    entries = []
    for t, text in task_entries(app, wanted, parse=parse):
        if not parse:
            entries.append((t, text))
            continue
        if t["status"] not in wanted:
            continue
        if unowned and t["owner"] is not None:
            continue
        if overdue and not t["overdue"]:
            continue
        if orphaned and not t["orphaned"]:
            continue
        if owner is not None and t["owner"] != owner_name:
            continue
        if client is not None and t["client"] != client:
            continue
        if stage is not None and t["stage"] != stage:
            continue
        entries.append((t, text))
    selected = [t for t, _ in entries]
    if as_json:
        if with_messages:
            ids = app.store.message_ids_by_task(app.now)
            for t in selected:
                t["message_ids"] = ids.get(t["id"], [])
            emit_json(selected)
        else:  # the store's JSON as it is: no second encoding of 100,000 objects
            items = ",\n  ".join(text or json.dumps(t, ensure_ascii=False) for t, text in entries)
            click.echo(f"[\n  {items}\n]" if entries else "[]")
        return
    if not selected:
        click.echo("no tasks match", err=True)
        return
    now = app.now
    rows = [
        (
            str(t["id"]),
            t["client"] or "-",
            views.owner_cell(t),
            t["status"],
            views.due_cell(t, now),
            views.age(t["last_activity_at"], now),
            str(t["messages"]),
            t["last_from"] or "-",
            t["subject"] or "(no subject)",
        )
        for t in selected
    ]
    click.echo(
        views.table(
            rows,
            ("ID", "CLIENT", "OWNER", "STATUS", "DUE", "IDLE", "MSGS", "LAST FROM", "SUBJECT"),
            wrap_last=60,
        )
    )


@cli.command()
@click.argument("task")
@json_option
@pass_app
def show(app: App, task: str, as_json: bool) -> None:
    """A task's timeline: each message, why it joined the thread, and the task's events.

    TASK is a task id (a merged-away id finds its task) or any Message-ID in the thread.
    """
    task_id = app.store.resolve_task(task)
    if task_id is None:
        raise UserError(f"unknown task {task!r}: no task id or Message-ID matches")
    derived = derive_task(app, task_id)
    if derived is None:
        raise UserError(f"task {task_id} has no messages as of {iso(app.now)}")
    obj, is_task = derived
    cutoff = iso(app.now) or ""
    obj["is_task"] = is_task
    threading = [
        views.event_entry(e)
        for e in app.store.events_for(task_id)
        if e["at"] <= cutoff and not e["derived"]
    ]
    obj["events"] = sorted(obj["events"] + threading, key=lambda e: e["at"])
    if as_json:
        emit_json(obj)
        return
    click.echo(views.render_show(obj, app.now))


def main() -> None:
    cli()


@functools.cache
def command_names() -> list[str]:
    """Every command path, for the help-text test."""
    out: list[str] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, cmd in sorted(group.commands.items()):
            out.append(" ".join((*prefix, name)))
            if isinstance(cmd, click.Group):
                walk(cmd, (*prefix, name))

    walk(cli, ())
    return out


# Commands in other modules register themselves on `cli` when imported.
from maildaemon import cli_daemon, cli_digest, cli_manage, cli_reports, cli_status  # noqa: E402, F401
