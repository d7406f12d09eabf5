"""Manager views shared by the CLI reports and the team digest (SPEC 6.2, 8, 9): who can
stand in for a person on a day, the command that fixes an orphan, the responsibility map.

Pure: the config, task objects (SPEC 10) and a day in; plain dicts out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from maildaemon.config import Config

LIVE = ("open", "waiting")


def today(config: Config, now: datetime) -> date:
    return now.astimezone(ZoneInfo(config.daemon.timezone)).date()


def stand_in(config: Config, name: str | None, day: date) -> str | None:
    """Who can take work meant for ``name`` on ``day``: that person, or their cover."""
    person = config.person_by_name(name) if name else None
    if person is None or not person.active:
        return None
    if not person.is_away(day):
        return person.name
    cover = config.person_by_name(person.away.cover) if person.away and person.away.cover else None
    if cover is None or not cover.active or cover.is_away(day):
        return None
    return cover.name


def suggest(config: Config, task: Mapping[str, Any], day: date) -> str:
    """The command that fixes an orphan: assign it to the map's owner of its stage (the
    first stage when it has none) for its client, else to a PERSON the manager picks."""
    client = config.client_by_name(task["client"]) if task["client"] else None
    stage = task["stage"] or (config.stages[0] if config.stages else None)
    mapped = client.map.get(stage) if client is not None and stage is not None else None
    who = stand_in(config, mapped, day)
    if who is None or who == task["owner"]:
        who = "PERSON"
    return f"maildaemon assign {task['id']} {who}"


# -- the responsibility map (SPEC 8) --------------------------------------------------------


def map_cell(
    config: Config, client: str, stage: str, owner: str | None, day: date
) -> dict[str, Any]:
    """One cell: its owner, and why it is a hole (work that will be orphaned) or covered."""
    cell: dict[str, Any] = {"owner": owner, "hole": None, "covered_by": None, "away_until": None}
    person = config.person_by_name(owner) if owner else None
    if owner is None:
        cell["hole"] = f"no owner for stage {stage} of {client}"
    elif person is None or not person.active:
        cell["hole"] = f"owner {owner} is inactive"
    elif person.is_away(day) and person.away is not None:
        until = cell["away_until"] = person.away.until.isoformat()
        cover = person.away.cover
        if cover is None:
            cell["hole"] = f"owner {owner} is away until {until} with no cover"
        elif stand_in(config, cover, day) != cover:
            cell["hole"] = (
                f"owner {owner} is away until {until}; the cover {cover} is unavailable too"
            )
        else:
            cell["covered_by"] = cover
    return cell


def responsibility_map(
    config: Config, tasks: Iterable[Mapping[str, Any]], day: date
) -> dict[str, Any]:
    """The board of SPEC 8 with open and waiting tasks per cell, its holes and covered cells."""
    counts = Counter((t["client"], t["stage"]) for t in tasks if t["status"] in LIVE)
    rows, holes, covered = [], [], []
    for client in config.clients:
        cells = {}
        for stage in config.stages:
            cell = map_cell(config, client.name, stage, client.map.get(stage), day)
            cell["open_tasks"] = counts.get((client.name, stage), 0)
            cells[stage] = cell
            where = {"client": client.name, "stage": stage, "owner": cell["owner"]}
            if cell["hole"] is not None:
                holes.append({**where, "reason": cell["hole"], "open_tasks": cell["open_tasks"]})
            if cell["covered_by"] is not None:
                covered.append(
                    {**where, "covered_by": cell["covered_by"], "away_until": cell["away_until"]}
                )
        unstaged = counts.get((client.name, None), 0)
        rows.append({"client": client.name, "cells": cells, "unstaged_tasks": unstaged})
    return {"stages": list(config.stages), "clients": rows, "holes": holes, "covered": covered}
