"""Validating a config: parsed TOML in, a ``Config`` out, or a ``ConfigError`` that names the
key path, the bad value and what is allowed (SPEC section 3).

``config.parse_config`` calls ``build_config``; this module imports the model from ``config.py``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildaemon.config import (
    BUILTIN_TIER,
    TARGETS,
    Addon,
    AlertSettings,
    Away,
    Calendar,
    ClassificationSettings,
    Client,
    Config,
    DaemonSettings,
    Delivery,
    DigestSettings,
    ImapSettings,
    Inbox,
    IngestSettings,
    Person,
    RetentionSettings,
    SlaSettings,
    SmtpSettings,
    TeamSettings,
    ThreadingSettings,
    Tier,
    in_domains,
)
from maildaemon.config_render import toml_value
from maildaemon.durations import (
    parse_business_duration,
    parse_clock,
    parse_days,
    parse_hours,
    parse_size,
    parse_wall_duration,
)
from maildaemon.errors import ConfigError

_T = TypeVar("_T")

_NAME = re.compile(r"\w[\w.\-]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOMAIN = re.compile(r"[^\s@.,<>]+(\.[^\s@.,<>]+)*\Z")
_SECRETS = {"password": "password_env or password_command", "token": "token_command"}
_MISSING = object()
_SECURITY = ("tls", "starttls", "plain")


def build_config(raw: dict[str, Any], source: str, base: Path) -> Config:
    """The config from parsed TOML; relative paths resolve against ``base``."""
    return _Parser(source, base).config(raw)


@cache
def _supported_countries() -> frozenset[str]:
    import holidays

    return frozenset(holidays.list_supported_countries())


def _show(value: Any) -> str:
    """A value as TOML would spell it, cut short when long."""
    text = toml_value(value.isoformat() if isinstance(value, date | time) else value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Table:
    """One TOML table under validation: its key path; unknown, secret and missing keys are
    errors from the start. Readers take a key that is present and return its checked value."""

    def __init__(self, parser: _Parser, path: str, data: Any, allowed: Iterable[str],
                 required: Iterable[str] = (), why: str = "it is required") -> None:  # fmt: skip
        self.parser, self.path = parser, path
        if not isinstance(data, dict):
            raise parser.error(f"{path} = {_show(data)}: expected a table")
        self.data: dict[str, Any] = data
        allowed = tuple(allowed)
        for key in data:
            if key in _SECRETS:
                raise parser.error(
                    f"{self.key(key)}: a secret does not belong in the config file (value not "
                    f"shown); use {_SECRETS[key]} instead"
                )
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise self.fail(key, f"unknown key; {hint}allowed: {', '.join(allowed)}")
        for key in required:
            if key not in data:
                raise self.missing(key, why)

    def key(self, key: str) -> str:
        return f"{self.path}.{key}"

    def fail(self, key: str, message: str, value: Any = _MISSING) -> ConfigError:
        value = self.data.get(key) if value is _MISSING else value
        return self.parser.error(f"{self.key(key)} = {_show(value)}: {message}")

    def missing(self, key: str, why: str) -> ConfigError:
        return self.parser.error(f"{self.key(key)} is missing; {why}")

    def build(
        self, cls: type[_T], spec: Mapping[str, Reader], from_: str = "", **defaults: Any
    ) -> _T:
        """``cls`` from the keys of ``spec`` that are present, over ``defaults`` and the
        dataclass's own defaults. TOML's ``from`` goes to the field ``from_``."""
        values = {k: read(self, k) for k, read in spec.items() if k in self.data}
        if "from" in values:
            values[from_] = values.pop("from")
        return cls(**(defaults | values))

    def typed(self, key: str, kind: type[_T], what: str, default: _T) -> _T:
        value = self.data.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {what}")
        return value

    def text(self, key: str) -> str:
        value = self.typed(key, str, "a string", "").strip()
        if not value:
            raise self.fail(key, "must not be empty")
        return value

    def parse(self, key: str, parse: Callable[[str], _T]) -> _T:
        """A string through a grammar; the grammar's ValueError names what is allowed."""
        try:
            return parse(self.text(key))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key) if key in self.data else default
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}")
        return value

    def strs(self, key: str, check: Callable[[str], str] = str) -> tuple[str, ...]:
        """A list of strings, each checked (and normalized) by ``check``; no duplicates."""
        out: list[str] = []
        for i, item in enumerate(self.typed(key, list, "a list of strings", [])):
            at = f"{key}[{i}]"
            if not isinstance(item, str) or not item.strip():
                raise self.fail(at, "expected a non-empty string", item)
            try:
                value = check(item.strip())
            except ValueError as exc:
                raise self.fail(at, str(exc), item) from None
            if value.lower() in (o.lower() for o in out):
                raise self.fail(at, "listed twice", item)
            out.append(value)
        return tuple(out)

    def flag(self, key: str) -> bool:
        return self.typed(key, bool, "true or false", False)

    def port(self, key: str) -> int:
        value = self.typed(key, int, "a port number", 0)
        if not 1 <= value <= 65535:
            raise self.fail(key, "expected a port number from 1 to 65535")
        return value

    def size(self, key: str) -> int:
        if type(self.data[key]) is not int:
            return self.parse(key, parse_size)
        if self.data[key] <= 0:  # a plain number of bytes
            raise self.fail(key, "a size must be more than zero")
        return int(self.data[key])

    def path_(self, key: str) -> Path:
        """Relative to the config file's folder, normalized (no ``..``), not resolved."""
        return Path(os.path.normpath(self.parser.base / Path(self.text(key)).expanduser()))

    def day(self, key: str) -> date:
        value = _as_date(self.data[key])
        if value is None:
            raise self.fail(key, 'expected a date YYYY-MM-DD, e.g. "2026-12-01"')
        return value

    def sub(self, key: str, allowed: Iterable[str], required: Iterable[str] = (),
            why: str = "it is required") -> _Table | None:  # fmt: skip
        if key not in self.data:
            return None
        return _Table(self.parser, self.key(key), self.data[key], allowed, required, why)


Reader = Callable[[_Table, str], Any]


def _via(parse: Callable[[str], Any]) -> Reader:
    return lambda t, k: t.parse(k, parse)


def _each(check: Callable[[str], str]) -> Reader:
    return lambda t, k: t.strs(k, check)


def _one(*choices: str) -> Reader:
    return lambda t, k: t.choice(k, choices, choices[0])


def _member(known: Mapping[str, Any], what: str) -> Callable[[str], str]:
    """A grammar for a reference to a configured tier, addon, calendar ..."""

    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"unknown {what}; configured {what}s: {', '.join(known) or '(none)'}")
        return value

    return check


def _as_date(value: Any) -> date | None:
    """A TOML date, or a string holding an ISO date; None for anything else."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError('unknown time zone; use an IANA name like "Europe/Amsterdam"') from None
    return name


def _name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError("a name is letters, digits, '.', '_' or '-' (no spaces)")
    return text


def _address(text: str) -> str:
    local, at, domain = text.lower().rpartition("@")
    if not at or not local or re.search(r"[\s<>,@]", local) or not _DOMAIN.match(domain):
        raise ValueError('expected one email address like "alice@example.com"')
    return text.lower()


def _domain(text: str) -> str:
    if not _DOMAIN.match(text.lower()):
        raise ValueError('expected a domain like "example.com" (no "@"; subdomains match too)')
    return text.lower()


def _ignore_entry(text: str) -> str:
    if text.lower().startswith("list:"):
        list_id = text[5:].strip(" <>").lower()
        if not list_id or " " in list_id:
            raise ValueError('expected "list:" and a List-Id, like "list:announce.vendor.example"')
        return "list:" + list_id
    try:
        return _address(text)
    except ValueError:
        raise ValueError('expected a sender address or "list:" and a List-Id') from None


def _env_name(text: str) -> str:
    if not _ENV_NAME.match(text):
        raise ValueError("expected the name of an environment variable, like SMTP_PASSWORD")
    return text


TEXT, NAME, ZONE, ADDRESS = _via(str), _via(_name), _via(_zone), _via(_address)
WALL, BUSINESS = _via(parse_wall_duration), _via(parse_business_duration)
DAEMON = {"database": _Table.path_, "timezone": ZONE, "poll_interval": WALL}
TEAM = {"domains": _each(_domain), "shared_addresses": _each(_address)}
DIGEST = {"time": _via(parse_clock), "days": _via(parse_days), "send_empty": _Table.flag,
          "retry": WALL}  # fmt: skip
SERVER = {"host": TEXT, "port": _Table.port, "security": _one(*_SECURITY),
          "username": TEXT, "password_env": _via(_env_name), "password_command": TEXT,
          "ca_file": _Table.path_, "verify": _Table.flag}  # fmt: skip
IMAP = SERVER | {"auth": _one("login", "xoauth2"), "token_command": TEXT, "folder": TEXT}
SMTP = SERVER | {"from": ADDRESS}
INBOX = {"name": NAME, "role": _one("shared", "sent")}
PERSON = {"name": NAME, "email": ADDRESS, "aliases": _each(_address), "role": TEXT,
          "manager": _Table.flag, "os_user": TEXT, "timezone": ZONE, "digest": _Table.flag,
          "active": _Table.flag}  # fmt: skip
AWAY = {"from": _Table.day, "until": _Table.day, "cover": TEXT}
CALENDAR = {"timezone": ZONE, "hours": _via(parse_hours)}
TIER = dict.fromkeys(TARGETS, BUSINESS)
IGNORE = _each(_ignore_entry)


def _one_of(t: _Table, keys: tuple[str, ...], what: str) -> str:
    present = [k for k in keys if k in t.data]
    if len(present) != 1:
        found = f"found {' and '.join(present)}" if present else "found none"
        raise t.parser.error(f"{t.path}: {what}: exactly one of {', '.join(keys)}; {found}")
    return present[0]


class _Parser:
    """Builds a Config from parsed TOML, section by section, in dependency order."""

    def __init__(self, source: str, base: Path) -> None:
        self.source, self.base = source, base

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    def section(self, raw: dict[str, Any], name: str, allowed: Iterable[str]) -> _Table:
        return _Table(self, f"[{name}]", raw.get(name, {}), allowed)

    def read(self, raw: dict[str, Any], name: str, cls: type[_T], spec: Mapping[str, Reader],
             **defaults: Any) -> _T:  # fmt: skip
        return self.section(raw, name, spec).build(cls, spec, **defaults)

    def entries(self, raw: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
        """An array of tables, each labelled ``[clients.acme]`` by name, else by index."""
        items = raw.get(section, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self.error(f"[{section}] = {_show(items)}: expected [[{section}]] tables")
        labels = [i.get("name") for i in items]
        return [
            (f"[{section}.{n}]" if isinstance(n, str) and labels.count(n) == 1 else
             f"[{section}.{i}]", item)
            for i, (n, item) in enumerate(zip(labels, items, strict=True))
        ]  # fmt: skip

    def config(self, raw: dict[str, Any]) -> Config:
        names = [f.name for f in fields(Config) if not f.name.startswith("_")][1:]
        for key in raw:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean [{close[0]}]? " if close else ""
                raise self.error(f"unknown section [{key}]; {hint}sections: {', '.join(names)}")
        daemon = self.read(
            raw, "daemon", DaemonSettings, DAEMON, database=self.base / "maildaemon.db"
        )
        team = self.read(raw, "team", TeamSettings, TEAM)
        calendars = self.calendars(raw)
        sla = self.sla(raw, calendars)
        stages = self.section(raw, "stages", ("order",)).strs("order", _name)
        people = self.people(raw, daemon.timezone, team)
        return Config(
            self.source,
            daemon,
            self.read(raw, "ingest", IngestSettings, {"text_cap": _Table.size}),
            self.inboxes(raw),
            team,
            people,
            self.clients(raw, sla, calendars, stages, people, team),
            sla,
            calendars,
            stages,
            self.read(raw, "threading", ThreadingSettings, {"subject_fallback": _Table.flag}),
            self.read(raw, "classification", ClassificationSettings, {"ignore": IGNORE}),
            self.digest(raw),
            self.read(raw, "alerts", AlertSettings, {"enabled": _Table.flag}),
            self.read(raw, "retention", RetentionSettings, {"bodies_after": WALL}),
        )

    def inboxes(self, raw: dict[str, Any]) -> tuple[Inbox, ...]:
        out: list[Inbox] = []
        for label, item in self.entries(raw, "inboxes"):
            why = "an inbox needs a name and a source (imap, maildir or mbox)"
            t = _Table(self, label, item, (*INBOX, "imap", "maildir", "mbox"), ("name",), why)
            kind = _one_of(t, ("imap", "maildir", "mbox"), "an inbox needs a source")
            imap = t.sub("imap", IMAP, ("host", "username"), "IMAP needs host and username")
            source = self.imap(imap) if imap else None
            path = None if imap else t.path_(kind)
            inbox = t.build(Inbox, INBOX, kind=kind, imap=source, path=path)
            if any(i.name.lower() == inbox.name.lower() for i in out):
                raise t.fail("name", "another inbox has this name")
            out.append(inbox)
        return tuple(out)

    def imap(self, t: _Table) -> ImapSettings:
        security = t.choice("security", _SECURITY, "tls")
        if t.choice("auth", ("login", "xoauth2"), "login") == "login":
            _one_of(t, ("password_env", "password_command"), 'auth = "login" needs a password')
            if "token_command" in t.data:
                raise t.fail("token_command", 'only used with auth = "xoauth2"')
        elif "token_command" not in t.data:
            raise t.missing("token_command", 'auth = "xoauth2" needs a command that prints a token')
        for key in ("password_env", "password_command"):
            if key in t.data and "token_command" in t.data:
                raise t.fail(key, 'not used with auth = "xoauth2": token_command gives the token')
        return t.build(ImapSettings, IMAP, port=993 if security == "tls" else 143)

    def people(self, raw: dict[str, Any], zone: str, team: TeamSettings) -> tuple[Person, ...]:
        read: list[tuple[_Table, Person]] = []
        owner: dict[str, str] = {}
        for label, item in self.entries(raw, "people"):
            why = "a person needs name and email"
            t = _Table(self, label, item, (*PERSON, "away"), ("name", "email"), why)
            p = t.build(Person, PERSON, timezone=zone)
            if p.name.lower() in ("me", "none"):
                raise t.fail("name", '"me" and "none" are reserved words in subject tags')
            if any(p.name.lower() == other.name.lower() for _, other in read):
                raise t.fail("name", "another person has this name (names ignore case)")
            for i, addr in enumerate(p.addresses):
                key = "email" if i == 0 else f"aliases[{i - 1}]"
                if addr in owner:
                    raise t.fail(key, f'already used by person "{owner[addr]}"', addr)
                if addr in team.shared_addresses:
                    raise t.fail(key, "is a shared address ([team].shared_addresses)", addr)
                owner[addr] = p.name
            read.append((t, p))
        roster = {p.name.lower(): p.name for _, p in read}
        out = []
        for t, p in read:
            a = t.sub("away", AWAY, ("from", "until"), "away needs from and until")
            if a is not None:
                away = a.build(Away, AWAY, from_="start")
                if away.until < away.start:
                    raise a.fail("until", f"is before from = {away.start.isoformat()}")
                cover = roster.get((away.cover or "").lower())
                if away.cover is not None and cover is None:
                    raise a.fail(
                        "cover", f"not on the roster; people: {', '.join(roster.values())}"
                    )
                if cover == p.name:
                    raise a.fail("cover", "a person cannot cover for themself")
                p = replace(p, away=replace(away, cover=cover))
            out.append(p)
        return tuple(out)

    def calendars(self, raw: dict[str, Any]) -> dict[str, Calendar]:
        section = raw.get("calendars", {})
        if not isinstance(section, dict):
            raise self.error(f"[calendars] = {_show(section)}: expected [calendars.NAME] tables")
        out = {}
        for name, body in section.items():
            why = "a calendar needs timezone and hours"
            t = _Table(self, f"[calendars.{name}]", body, (*CALENDAR, "holidays"), CALENDAR, why)
            country, dates = self.holidays(t)
            extra = {"name": name, "holidays_country": country, "holiday_dates": dates}
            out[name] = t.build(Calendar, CALENDAR, **extra)
        return out

    def holidays(self, t: _Table) -> tuple[str | None, tuple[date, ...]]:
        """A country code, or a list of dates (and at most one country code)."""
        value = t.data.get("holidays", [])
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise t.fail("holidays", 'expected a country code like "US" or a list of dates')
        country, dates = None, set()
        for i, item in enumerate(items):
            key = "holidays" if isinstance(value, str) else f"holidays[{i}]"
            code = item.strip().upper() if isinstance(item, str) else ""
            if re.fullmatch(r"[A-Z]{2,3}", code):
                if country is not None:
                    raise t.fail(key, "a second country; a calendar follows one country", item)
                if code not in _supported_countries():
                    why = 'unknown country code; use one the holidays package knows, like "US"'
                    raise t.fail(key, why, item)
                country = code
            elif (day := _as_date(item)) is not None:
                dates.add(day)
            else:
                raise t.fail(key, 'expected a country code like "US" or a date YYYY-MM-DD', item)
        return country, tuple(sorted(dates))

    def sla(self, raw: dict[str, Any], calendars: Mapping[str, Calendar]) -> SlaSettings:
        t = self.section(raw, "sla", ("tiers", "addons", "default_tier", "default_calendar"))

        def named(key: str, cls: type[_T], spec: Mapping[str, Reader]) -> dict[str, _T]:
            """``[sla.KEY.NAME]`` tables, each built into ``cls`` with that name."""
            tables = t.typed(key, dict, f"[sla.{key}.NAME] tables", {})
            return {
                name: _Table(self, f"[sla.{key}.{name}]", body, spec).build(cls, spec, name=name)
                for name, body in tables.items()
            }

        calendar = _via(_member(calendars, "calendar"))
        tiers = named("tiers", Tier, TIER) or {"standard": BUILTIN_TIER}
        addons = named("addons", Addon, TIER | {"calendar": calendar})
        if "default_tier" not in t.data and "standard" not in tiers:
            why = f"no tier is called standard; name one of the tiers: {', '.join(tiers)}"
            raise t.missing("default_tier", why)
        spec = {"default_tier": _via(_member(tiers, "tier")), "default_calendar": calendar}
        return t.build(SlaSettings, spec, tiers=tiers, addons=addons)

    def clients(self, raw: dict[str, Any], sla: SlaSettings, calendars: Mapping[str, Calendar],
                stages: tuple[str, ...], people: tuple[Person, ...], team: TeamSettings,
                ) -> tuple[Client, ...]:  # fmt: skip
        spec = {"name": NAME, "domains": _each(_domain), "addresses": _each(_address),
                "tier": _via(_member(sla.tiers, "tier")),
                "addons": _each(_member(sla.addons, "addon")),
                "calendar": _via(_member(calendars, "calendar"))}  # fmt: skip
        team_addresses = {a for p in people for a in p.addresses} | set(team.shared_addresses)
        claimed: dict[str, str] = {}
        out: list[Client] = []
        for label, item in self.entries(raw, "clients"):
            t = _Table(self, label, item, (*spec, "map"), ("name",), "a client needs a name")
            c = t.build(Client, spec, tier=sla.default_tier, map=self.row(t, stages, people))
            if any(c.name.lower() == other.name.lower() for other in out):
                raise t.fail("name", "another client has this name")
            if not c.domains and not c.addresses:
                raise t.missing("domains", "a client needs domains or addresses (or both)")
            for key, values in (("domains", c.domains), ("addresses", c.addresses)):
                for i, v in enumerate(values):
                    if v in claimed:
                        raise t.fail(f"{key}[{i}]", f'already claimed by client "{claimed[v]}"', v)
                    if in_domains(v, frozenset(team.domains)) or v in team_addresses:
                        raise t.fail(f"{key}[{i}]", "belongs to the team ([team], [[people]])", v)
                    claimed[v] = c.name
            out.append(c)
        return tuple(out)

    def row(self, t: _Table, stages: tuple[str, ...], people: tuple[Person, ...]) -> dict[str, str]:
        """The client's responsibility map: stage -> roster name (given as name or address)."""
        m = t.sub("map", t.typed("map", dict, "a table of stage = person", {}))
        roster = {p.name.lower(): p.name for p in people}
        roster |= {a: p.name for p in people for a in p.addresses}
        row: dict[str, str] = {}
        for stage, who in m.data.items() if m else ():
            assert m is not None
            canon = next((s for s in stages if s.lower() == stage.lower()), None)
            if stages and canon is None:
                raise m.fail(stage, f"unknown stage {stage!r}; [stages].order: {', '.join(stages)}")
            if not isinstance(who, str) or who.strip().lower() not in roster:
                names = ", ".join(p.name for p in people) or "(none)"
                raise m.fail(stage, f"not on the roster; people: {names}")
            row[canon or stage] = roster[who.strip().lower()]
        return row

    def digest(self, raw: dict[str, Any]) -> DigestSettings:
        t = self.section(raw, "digest", (*DIGEST, "delivery"))
        delivery = None
        d = t.sub("delivery", ("smtp", "outbox"))
        if d is not None:
            kind = _one_of(d, ("smtp", "outbox"), "delivery needs one way to deliver")
            s = d.sub("smtp", SMTP, ("host", "from"), "SMTP needs host and from")
            delivery = Delivery(
                kind, d.path_(kind) if s is None else None, self.smtp(s) if s else None
            )
        return t.build(DigestSettings, DIGEST, delivery=delivery)

    def smtp(self, t: _Table) -> SmtpSettings:
        security = t.choice("security", _SECURITY, "starttls")
        if "username" in t.data:
            _one_of(t, ("password_env", "password_command"), "a username needs a password")
        elif "password_env" in t.data or "password_command" in t.data:
            raise t.missing("username", "a password is only sent with a username")
        port = {"tls": 465, "starttls": 587}.get(security, 25)
        unset = dict.fromkeys(("username", "password_env", "password_command"))
        return t.build(SmtpSettings, SMTP, "sender", port=port, security=security, **unset)
