"""Printing a validated config back: the file's own shape as values, and as TOML text.

``document`` is also what ``Config.fingerprint`` hashes, so it must stay canonical: the same
content gives the same document, whatever the layout or comments of the file it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maildaemon.durations import (
    BusinessDuration,
    format_clock,
    format_days,
    format_hours,
    format_size,
    format_wall_duration,
)

if TYPE_CHECKING:  # config.py imports this module: the model is needed for annotations only
    from maildaemon.config import Calendar, Config, Inbox, Person


def render_config(config: Config) -> str:
    """The validated config as TOML, defaults filled in, commands shown as ``<redacted>``."""
    lines = [f"# {config.source}, as validated (defaults filled in, commands redacted)"]

    def table(header: str, body: Mapping[str, Any], always: bool = False) -> None:
        plain = {k: v for k, v in body.items() if v not in ({}, []) and not _is_subtables(v)}
        if plain or always:
            lines.extend(["", header, *_assignments(plain)])
        for k, v in body.items():
            if _is_subtables(v):
                for name, sub in v.items():
                    table(f"{header[:-1]}.{_toml_key(k)}.{_toml_key(name)}]", sub, always=True)

    for name, section in document(config, redact=True).items():
        if isinstance(section, list):
            for item in section:
                lines.extend(["", f"[[{name}]]", *_assignments(item)])
        elif name == "calendars":
            for cal, body in section.items():
                table(f"[calendars.{_toml_key(cal)}]", body, always=True)
        else:
            table(f"[{name}]", section)
    return "\n".join(lines) + "\n"


def _is_subtables(value: Any) -> bool:
    return (
        isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())
    )


def _assignments(body: Mapping[str, Any]) -> list[str]:
    """``key = value`` for each entry, as TOML spells them."""
    return [f"{_toml_key(k)} = {toml_value(v)}" for k, v in body.items()]


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """A plain value (bool, int, list, dict, else its text) as TOML spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(_assignments(value)) + " }"
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def document(config: Config, *, redact: bool) -> dict[str, Any]:
    """The config in the file's own shape (TOML key names), canonical and complete."""

    def secret(value: str | None) -> str | None:
        return "<redacted>" if redact and value is not None else value

    def plain(obj: Any, skip: tuple[str, ...] = (), **renames: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.name in skip or value is None or value == () or value == {}:
                continue
            if f.name in ("password_command", "token_command"):
                value = secret(value)
            elif isinstance(value, BusinessDuration | Path):
                value = str(value)
            elif isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, timedelta):
                value = format_wall_duration(value)
            elif is_dataclass(value):
                value = plain(value)
            out[renames.get(f.name, f.name)] = value
        return out

    def inbox(i: Inbox) -> dict[str, Any]:
        source: Any = plain(i.imap) if i.imap is not None else str(i.path)
        return {"name": i.name, i.kind: source, "role": i.role}

    def person(p: Person) -> dict[str, Any]:
        return plain(p) | ({"away": plain(p.away, start="from")} if p.away else {})

    def calendar(c: Calendar) -> dict[str, Any]:
        holidays: list[str] = [c.holidays_country] if c.holidays_country else []
        holidays += [d.isoformat() for d in c.holiday_dates]
        out = {"timezone": c.timezone, "hours": format_hours(c.hours)}
        return out | (
            {"holidays": holidays[0] if len(holidays) == 1 else holidays} if holidays else {}
        )

    d = config.digest
    digest: dict[str, Any] = {
        "time": format_clock(d.time),
        "days": format_days(d.days),
        "send_empty": d.send_empty,
        "retry": format_wall_duration(d.retry),
    }
    if d.delivery is not None and d.delivery.smtp is not None:
        digest["delivery"] = {"smtp": plain(d.delivery.smtp, sender="from")}
    elif d.delivery is not None:
        digest["delivery"] = {"outbox": str(d.delivery.outbox)}
    return {
        "daemon": plain(config.daemon),
        "ingest": {"text_cap": format_size(config.ingest.text_cap)},
        "team": plain(config.team),
        "inboxes": [inbox(i) for i in config.inboxes],
        "people": [person(p) for p in config.people],
        "clients": [plain(c) for c in config.clients],
        "sla": {
            "default_tier": config.sla.default_tier,
            **(
                {"default_calendar": config.sla.default_calendar}
                if config.sla.default_calendar
                else {}
            ),
            "tiers": {n: plain(t, skip=("name",)) for n, t in config.sla.tiers.items()},
            "addons": {n: plain(a, skip=("name",)) for n, a in config.sla.addons.items()},
        },
        "calendars": {n: calendar(c) for n, c in config.calendars.items()},
        "stages": {"order": list(config.stages)} if config.stages else {},
        "threading": plain(config.threading),
        "classification": plain(config.classification),
        "digest": digest,
        "alerts": plain(config.alerts),
        "retention": plain(config.retention),
    }
