"""The configuration: one TOML file parsed once into frozen dataclasses (SPEC section 3).

Every error names the key path, the bad value and what is allowed. Secrets never live in the
file: passwords and tokens come from ``password_env`` / ``password_command`` / ``token_command``.

This module is the model, its lookups and the public functions. Validation lives in
``config_load.py`` (imported when a config is parsed, since it imports this module) and
printing back in ``config_render.py``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

from maildaemon.config_render import document
from maildaemon.config_render import render_config as render_config  # re-exported
from maildaemon.durations import BusinessDuration as BusinessDuration  # re-exported
from maildaemon.durations import WorkingHours as WorkingHours
from maildaemon.errors import ConfigError

TARGETS = ("first_response", "follow_up", "update_every", "handoff_ack", "resolution")
_T = TypeVar("_T")


# --- the configuration as values -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    database: Path = Path("maildaemon.db")
    timezone: str = "UTC"
    poll_interval: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IngestSettings:
    text_cap: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int = 993
    security: str = "tls"
    username: str = ""
    password_env: str | None = None
    password_command: str | None = None
    auth: str = "login"
    token_command: str | None = None
    folder: str = "INBOX"
    ca_file: Path | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Inbox:
    name: str
    kind: str  # "imap" | "maildir" | "mbox"
    path: Path | None = None
    imap: ImapSettings | None = None
    role: str = "shared"  # "shared" | "sent"


@dataclass(frozen=True, slots=True)
class TeamSettings:
    domains: tuple[str, ...] = ()
    shared_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Away:
    start: date
    until: date
    cover: str | None = None  # a roster name


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    aliases: tuple[str, ...] = ()
    role: str | None = None
    manager: bool = False
    os_user: str | None = None
    timezone: str = "UTC"
    digest: bool = True
    active: bool = True
    away: Away | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.email.lower(), *(a.lower() for a in self.aliases))

    def is_away(self, day: date) -> bool:
        """Whether ``day`` falls in this person's away window."""
        return self.away is not None and self.away.start <= day <= self.away.until


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    domains: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    tier: str = "standard"
    addons: tuple[str, ...] = ()
    calendar: str | None = None
    map: Mapping[str, str] = field(default_factory=dict)  # stage -> roster name


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    first_response: BusinessDuration | None = None
    follow_up: BusinessDuration | None = None
    update_every: BusinessDuration | None = None
    handoff_ack: BusinessDuration | None = None
    resolution: BusinessDuration | None = None


@dataclass(frozen=True, slots=True)
class Addon:
    name: str
    calendar: str | None = None
    first_response: BusinessDuration | None = None
    follow_up: BusinessDuration | None = None
    update_every: BusinessDuration | None = None
    handoff_ack: BusinessDuration | None = None
    resolution: BusinessDuration | None = None


BUILTIN_TIER = Tier(
    "standard",
    first_response=BusinessDuration(1, "d"),
    follow_up=BusinessDuration(2, "d"),
    handoff_ack=BusinessDuration(1, "d"),
)


@dataclass(frozen=True, slots=True)
class SlaSettings:
    tiers: Mapping[str, Tier] = field(default_factory=lambda: {"standard": BUILTIN_TIER})
    addons: Mapping[str, Addon] = field(default_factory=dict)
    default_tier: str = "standard"
    default_calendar: str | None = None  # None: 24/7 in daemon.timezone


@lru_cache(maxsize=64)
def _country_holidays(country: str, year: int) -> frozenset[date]:
    import holidays  # imported on first use: it takes a while

    return frozenset(holidays.country_holidays(country, years=year).keys())


@dataclass(frozen=True, slots=True)
class Calendar:
    name: str
    timezone: str
    hours: tuple[WorkingHours, ...]
    holidays_country: str | None = None
    holiday_dates: tuple[date, ...] = ()

    def is_holiday(self, day: date) -> bool:
        """Whether ``day`` (local to this calendar) is a listed date or a public holiday."""
        if day in self.holiday_dates:
            return True
        return self.holidays_country is not None and day in _country_holidays(
            self.holidays_country, day.year
        )


@dataclass(frozen=True, slots=True)
class ThreadingSettings:
    subject_fallback: bool = True


@dataclass(frozen=True, slots=True)
class ClassificationSettings:
    ignore: tuple[str, ...] = ()  # lower-cased addresses and "list:ID" entries


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None
    password_env: str | None
    password_command: str | None
    sender: str  # TOML key "from"
    ca_file: Path | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Delivery:
    kind: str  # "smtp" | "outbox"
    outbox: Path | None = None
    smtp: SmtpSettings | None = None


@dataclass(frozen=True, slots=True)
class DigestSettings:
    time: time = time(8, 0)
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    send_empty: bool = False
    delivery: Delivery | None = None
    retry: timedelta = timedelta(minutes=1)  # first retry of a failed delivery; doubles to 1h


@dataclass(frozen=True, slots=True)
class AlertSettings:
    enabled: bool = False


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    bodies_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class _Index:
    """Lookups precomputed once per config, for the per-message hot paths."""

    person_by_address: dict[str, Person]
    person_by_name: dict[str, Person]
    person_by_local: dict[str, Person | None]  # None: the local part is ambiguous
    shared: frozenset[str]
    team_domains: frozenset[str]
    client_by_address: dict[str, Client]
    client_by_domain: dict[str, Client]
    client_by_name: dict[str, Client]
    ignored_addresses: frozenset[str]
    ignored_lists: frozenset[str]
    inbox_by_name: dict[str, Inbox]


def in_domains(domain: str, table: Mapping[str, _T] | frozenset[str]) -> str | None:
    """The entry of ``table`` that is ``domain`` or a parent of it, most specific first."""
    while domain:
        if domain in table:
            return domain
        domain = domain.partition(".")[2]
    return None


def _domain_of(addr: str) -> str:
    return addr.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Config:
    source: str = "maildaemon.toml"
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    inboxes: tuple[Inbox, ...] = ()
    team: TeamSettings = field(default_factory=TeamSettings)
    people: tuple[Person, ...] = ()
    clients: tuple[Client, ...] = ()
    sla: SlaSettings = field(default_factory=SlaSettings)
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    threading: ThreadingSettings = field(default_factory=ThreadingSettings)
    classification: ClassificationSettings = field(default_factory=ClassificationSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    _index: _Index = field(init=False, repr=False, compare=False)
    _fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_local: dict[str, Person | None] = {}
        for p in self.people:
            for addr in p.addresses:
                local = addr.partition("@")[0]
                by_local[local] = p if by_local.get(local, p) is p else None
        ignore = [i.lower() for i in self.classification.ignore]
        index = _Index(
            person_by_address={a: p for p in self.people for a in p.addresses},
            person_by_name={p.name.lower(): p for p in self.people},
            person_by_local=by_local,
            shared=frozenset(a.lower() for a in self.team.shared_addresses),
            team_domains=frozenset(d.lower() for d in self.team.domains),
            client_by_address={a.lower(): c for c in self.clients for a in c.addresses},
            client_by_domain={d.lower(): c for c in self.clients for d in c.domains},
            client_by_name={c.name.lower(): c for c in self.clients},
            ignored_addresses=frozenset(i for i in ignore if not i.startswith("list:")),
            ignored_lists=frozenset(i[5:] for i in ignore if i.startswith("list:")),
            inbox_by_name={i.name.lower(): i for i in self.inboxes},
        )
        object.__setattr__(self, "_index", index)
        canonical = json.dumps(document(self, redact=False), sort_keys=True, default=str)
        object.__setattr__(self, "_fingerprint", hashlib.sha256(canonical.encode()).hexdigest())

    @property
    def fingerprint(self) -> str:
        """sha256 of the normalized content (not of the text: comments and layout do not count)."""
        return self._fingerprint

    def person_for_address(self, addr: str) -> Person | None:
        return self._index.person_by_address.get(addr.strip().lower())

    def person_by_name(self, name: str) -> Person | None:
        return self._index.person_by_name.get(name.strip().lower())

    def resolve_person(self, token: str) -> Person | None:
        """A roster name, an address or alias, or a local part that only one person has."""
        key = token.strip().lower()
        if "@" in key:
            return self._index.person_by_address.get(key)
        return self._index.person_by_name.get(key) or self._index.person_by_local.get(key)

    def is_shared_address(self, addr: str) -> bool:
        return addr.strip().lower() in self._index.shared

    def is_team_address(self, addr: str) -> bool:
        key = addr.strip().lower()
        return (
            key in self._index.person_by_address
            or key in self._index.shared
            or in_domains(_domain_of(key), self._index.team_domains) is not None
        )

    def client_for_address(self, addr: str) -> Client | None:
        key = addr.strip().lower()
        client = self._index.client_by_address.get(key)
        if client is not None:
            return client
        domain = in_domains(_domain_of(key), self._index.client_by_domain)
        return None if domain is None else self._index.client_by_domain[domain]

    def client_by_name(self, name: str) -> Client | None:
        return self._index.client_by_name.get(name.strip().lower())

    def is_ignored(self, addr: str | None, list_id: str | None) -> bool:
        if addr is not None and addr.strip().lower() in self._index.ignored_addresses:
            return True
        return list_id is not None and list_id.strip(" <>").lower() in self._index.ignored_lists

    def inbox_by_name(self, name: str) -> Inbox | None:
        return self._index.inbox_by_name.get(name.strip().lower())


# --- finding and loading ----------------------------------------------------------------------


def find_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$MAILDAEMON_CONFIG``, else ``./maildaemon.toml``; not checked."""
    return Path(explicit or environ.get("MAILDAEMON_CONFIG") or "maildaemon.toml")


def load_config(path: Path) -> Config:
    """Read and validate the file; relative paths in it resolve against its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no config at {path}; run `maildaemon init` to write one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    return parse_config(text, source=str(path), base_dir=path.absolute().parent)


def parse_config(
    text: str, *, source: str = "maildaemon.toml", base_dir: Path | None = None
) -> Config:
    """Validate TOML text. Relative paths resolve against ``base_dir`` (the cwd when None)."""
    from maildaemon.config_load import build_config  # imported here: it imports this module

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return build_config(raw, source, base_dir if base_dir is not None else Path.cwd())


STARTER_CONFIG: str = (resources.files("maildaemon") / "templates" / "starter.toml").read_text(
    encoding="utf-8"
)
