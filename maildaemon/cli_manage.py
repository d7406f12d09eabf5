"""Commands on tasks (SPEC 6.2, 10): assign, unassign, close, reopen, stage, client, due,
reassign. Each is stored as an event on the task's timeline at the moment it is given
(`--now` when set), with its actor; the task is then re-derived.

Managers may act on any task; others only on tasks they own. The actor is `--as PERSON`,
else the roster person whose `os_user` (or address local part) is the OS user.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any, TypeVar

import click

from maildaemon import ingest, views
from maildaemon.cli import (
    App,
    cli,
    derive_task,
    emit_json,
    json_option,
    listing,
    pass_app,
    task_objects,
)
from maildaemon.config import Config, Person
from maildaemon.errors import UserError
from maildaemon.ownership import Command, Verb
from maildaemon.tags import parse_due

F = TypeVar("F", bound=Callable[..., Any])


def actor_options(f: F) -> F:
    """--as and --note, shared by every command on a task."""
    f = click.option("--note", metavar="TEXT", help="Why: kept with the event.")(f)
    return click.option(
        "--as",
        "as_",
        metavar="PERSON",
        help="Who gives the command (default: the roster person of the OS user).",
    )(f)


def resolve_actor(config: Config, as_: str | None) -> Person:
    if as_ is not None:
        person = config.resolve_person(as_)
        if person is None:
            raise UserError(
                f"unknown person {as_!r} for --as; the roster: "
                f"{listing(p.name for p in config.people)}"
            )
        return person
    user = getpass.getuser()
    for p in config.people:
        if p.os_user == user or (p.os_user is None and p.email.split("@")[0] == user):
            return p
    raise UserError(
        f"the OS user {user!r} matches no one on the roster (os_user or address local part); "
        "name the actor with --as PERSON"
    )


def _person(config: Config, token: str) -> str:
    person = config.resolve_person(token)
    if person is None:
        raise UserError(
            f"unknown person {token!r}; the roster: {listing(p.name for p in config.people)}"
        )
    return person.name


def _task(app: App, token: str) -> tuple[int, dict[str, Any]]:
    task_id = app.store.resolve_task(token)
    if task_id is None:
        raise UserError(f"unknown task {token!r}: no task id or Message-ID matches")
    derived = derive_task(app, task_id)
    if derived is None:
        raise UserError(f"task {task_id} has no messages as of {app.now.isoformat()}")
    return task_id, derived[0]


def _check_may_act(actor: Person, task: dict[str, Any]) -> None:
    if actor.manager or task["owner"] == actor.name:
        return
    owner = task["owner"] or "nobody"
    raise UserError(
        f"{actor.name} may act only on tasks they own; task {task['id']} is owned by {owner} "
        "(managers may act on any task)"
    )


def give(
    app: App, token: str, verb: Verb, arg: str | None, as_: str | None, note: str | None
) -> dict[str, Any]:
    """Check, store and apply one command; returns the task as it is now."""
    config = app.config
    actor = resolve_actor(config, as_)
    task_id, task = _task(app, token)
    _check_may_act(actor, task)
    app.store.add_command(task_id, Command(app.now, actor.name, verb, arg, note))
    state = ingest.refresh_task(app.store, config, task_id, app.now)
    assert state is not None
    return views.from_state(task_id, state, app.now)


def _report(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(task)
        return
    line = f"#{task['id']} {task['subject'] or '(no subject)'}: owner {views.owner_cell(task)}"
    line += f", {task['status']}"
    if task["stage"]:
        line += f", stage {task['stage']}"
    if task["due_at"]:
        line += f", due {task['due_at']}"
    click.echo(line)


@cli.command()
@click.argument("task")
@click.argument("person")
@actor_options
@json_option
@pass_app
def assign(
    app: App, task: str, person: str, as_: str | None, note: str | None, as_json: bool
) -> None:
    """Give TASK to PERSON: a handoff pending their acknowledgement (a claim if it is you)."""
    _report(give(app, task, "assign", _person(app.config, person), as_, note), as_json)


@cli.command()
@click.argument("task")
@actor_options
@json_option
@pass_app
def unassign(app: App, task: str, as_: str | None, note: str | None, as_json: bool) -> None:
    """Leave TASK without an owner (it shows up as orphaned)."""
    _report(give(app, task, "unassign", None, as_, note), as_json)


@cli.command()
@click.argument("task")
@actor_options
@json_option
@pass_app
def close(app: App, task: str, as_: str | None, note: str | None, as_json: bool) -> None:
    """Close TASK: every clock stops (a client's next message reopens it)."""
    _report(give(app, task, "close", None, as_, note), as_json)


@cli.command()
@click.argument("task")
@actor_options
@json_option
@pass_app
def reopen(app: App, task: str, as_: str | None, note: str | None, as_json: bool) -> None:
    """Reopen a closed TASK."""
    _report(give(app, task, "reopen", None, as_, note), as_json)


@cli.command()
@click.argument("task")
@click.argument("stage_name", metavar="STAGE")
@actor_options
@json_option
@pass_app
def stage(
    app: App, task: str, stage_name: str, as_: str | None, note: str | None, as_json: bool
) -> None:
    """Move TASK to STAGE; the owner becomes that stage's owner in the client's map."""
    stages = {s.lower(): s for s in app.config.stages}
    if stage_name.lower() not in stages:
        raise UserError(f"unknown stage {stage_name!r}; configured: {listing(app.config.stages)}")
    _report(give(app, task, "stage", stages[stage_name.lower()], as_, note), as_json)


@cli.command()
@click.argument("task")
@click.argument("client_name", metavar="CLIENT")
@actor_options
@json_option
@pass_app
def client(
    app: App, task: str, client_name: str, as_: str | None, note: str | None, as_json: bool
) -> None:
    """Set TASK's client (its SLA and calendar follow)."""
    found = app.config.client_by_name(client_name)
    if found is None:
        raise UserError(
            f"unknown client {client_name!r}; configured: "
            f"{listing(c.name for c in app.config.clients)}"
        )
    _report(give(app, task, "client", found.name, as_, note), as_json)


@cli.command()
@click.argument("task")
@click.argument("when")
@actor_options
@json_option
@pass_app
def due(app: App, task: str, when: str, as_: str | None, note: str | None, as_json: bool) -> None:
    """Set an explicit deadline: a day (2026-12-01, end of that working day) or business
    time from now (4h, 3d, 1w)."""
    if parse_due(when) is None:
        raise UserError(f"{when!r} is not a deadline: a day like 2026-12-01, or 90m, 4h, 3d, 1w")
    _report(give(app, task, "due", when.lower(), as_, note), as_json)


@cli.command()
@click.option("--from", "from_", required=True, metavar="PERSON", help="Whose tasks.")
@click.option("--to", "to", required=True, metavar="PERSON", help="Who takes them over.")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's tasks.")
@click.option("--dry-run", is_flag=True, help="List what would move; change nothing.")
@actor_options
@json_option
@pass_app
def reassign(
    app: App,
    from_: str,
    to: str,
    client_name: str | None,
    dry_run: bool,
    as_: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Hand every open and waiting task of one person to another, pending acknowledgement."""
    config = app.config
    source, target = _person(config, from_), _person(config, to)
    if client_name is not None and config.client_by_name(client_name) is None:
        raise UserError(f"unknown client {client_name!r}")
    actor = resolve_actor(config, as_)
    moving = [
        t
        for t in views.sort_tasks(task_objects(app))
        if t["owner"] == source
        and t["status"] in ("open", "waiting")
        and (client_name is None or t["client"] == client_name)
    ]
    if not dry_run:
        for t in moving:
            _check_may_act(actor, t)
        moving = [give(app, str(t["id"]), "assign", target, actor.name, note) for t in moving]
    if as_json:
        emit_json(moving)
        return
    verb = "would move" if dry_run else "moved"
    click.echo(f"{verb} {len(moving)} task(s) from {source} to {target}", err=True)
    for t in moving:
        _report(t, False)


@cli.command()
@click.argument("task")
@click.argument("other")
@actor_options
@json_option
@pass_app
def merge(
    app: App, task: str, other: str, as_: str | None, note: str | None, as_json: bool
) -> None:
    """Join two tasks into one (threading missed a link); the older task keeps its id and
    the other id still finds it."""
    config = app.config
    actor = resolve_actor(config, as_)
    first_id, first = _task(app, task)
    second_id, second = _task(app, other)
    if first_id == second_id:
        raise UserError(f"{task} and {other} are the same task ({first_id})")
    for t in (first, second):
        _check_may_act(actor, t)
    app.store.add_repair(
        "merge", first["root_message_id"], second["root_message_id"], app.now, actor.name
    )
    ingest.rederive(app.store, config, app.now)
    kept = app.store.resolve_task(str(first_id))
    assert kept is not None
    result, _ = derive_task(app, kept) or ({}, False)
    _report(result, as_json)


@cli.command()
@click.argument("message_id", metavar="MESSAGE-ID")
@actor_options
@json_option
@pass_app
def split(app: App, message_id: str, as_: str | None, note: str | None, as_json: bool) -> None:
    """Move a message, and the replies below it, out into a task of its own."""
    config = app.config
    actor = resolve_actor(config, as_)
    mid = message_id.strip()
    mid = mid if mid.startswith("<") else f"<{mid}>"
    task_id = app.store.resolve_task(mid)
    if task_id is None:
        raise UserError(f"unknown message {message_id!r}")
    _, task = _task(app, str(task_id))
    _check_may_act(actor, task)
    if task["root_message_id"] == mid:
        raise UserError(f"{mid} is the first message of task {task_id}; nothing to split off")
    app.store.add_repair("split", mid, None, app.now, actor.name)
    ingest.rederive(app.store, config, app.now)
    new_id = app.store.resolve_task(mid)
    assert new_id is not None
    result, _ = derive_task(app, new_id) or ({}, False)
    _report(result, as_json)
