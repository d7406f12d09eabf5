"""The configuration layer: parsing, validation messages, lookups, printing back."""

from __future__ import annotations

import tomllib
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from maildaemon.config import (
    STARTER_CONFIG,
    BusinessDuration,
    Config,
    WorkingHours,
    find_config_path,
    load_config,
    parse_config,
    render_config,
)
from maildaemon.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

ROSTER = """
[team]
domains = ["example.com"]
shared_addresses = ["support@example.com"]

[[people]]
name = "alice"
email = "alice@example.com"
aliases = ["a.smith@example.com", "alice@other.org"]

[[people]]
name = "bob"
email = "bob@example.com"

[[people]]
name = "Carol"
email = "carol@example.com"
aliases = ["bob@partner.net"]
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return str(info.value)


def client(extra: str, head: str = "") -> str:
    return f'{head}\n[[clients]]\nname = "acme"\ndomains = ["acme.com"]\n{extra}\n'


# --- syntax, keys, types -----------------------------------------------------------------------


def test_broken_toml_names_the_line() -> None:
    message = error_of('[daemon]\ntimezone = "UTC"\npoll_interval = \n')
    assert message.startswith("maildaemon.toml: not valid TOML")
    assert "line 3" in message


def test_unknown_key_suggests_the_close_one() -> None:
    message = error_of('[daemon]\ntimezon = "UTC"\n')
    assert '[daemon].timezon = "UTC": unknown key' in message
    assert 'did you mean "timezone"?' in message


def test_unknown_section_suggests_the_close_one() -> None:
    assert "unknown section [deamon]; did you mean [daemon]?" in error_of("[deamon]\n")


def test_unknown_key_in_an_inline_table_names_the_full_path() -> None:
    text = '[[inboxes]]\nname = "s"\nimap = { host = "h", username = "u", pasword_env = "P" }\n'
    message = error_of(text)
    assert '[inboxes.s].imap.pasword_env = "P": unknown key' in message
    assert 'did you mean "password_env"?' in message


def test_missing_required_key_is_named() -> None:
    message = error_of('[[people]]\nname = "alice"\n')
    assert "[people.alice].email is missing" in message


def test_wrong_type_is_an_error() -> None:
    assert '[alerts].enabled = "yes": expected true or false' in error_of(
        '[alerts]\nenabled = "yes"\n'
    )
    message = error_of('[team]\ndomains = "example.com"\n')
    assert '[team].domains = "example.com": expected a list of strings' in message


def test_sections_given_the_wrong_shape_are_errors() -> None:
    assert "expected [[inboxes]] tables" in error_of('[inboxes]\nname = "x"\n')


def test_a_password_in_the_file_is_refused_without_echoing_it() -> None:
    text = '[[inboxes]]\nname = "s"\nimap = { host = "h", username = "u", password = "hunter2" }\n'
    message = error_of(text)
    assert "[inboxes.s].imap.password" in message
    assert "password_env or password_command" in message
    assert "hunter2" not in message


def test_a_password_in_the_smtp_table_is_refused() -> None:
    text = '[digest]\ndelivery = { smtp = { host = "h", from = "m@x.org", password = "pw" } }\n'
    assert "[digest].delivery.smtp.password" in error_of(text)


def test_xoauth2_needs_a_token_command() -> None:
    text = '[[inboxes]]\nname = "s"\nimap = { host = "h", username = "u", auth = "xoauth2" }\n'
    message = error_of(text)
    assert "[inboxes.s].imap.token_command is missing" in message
    assert "xoauth2" in message


def test_login_needs_exactly_one_password_source() -> None:
    text = '[[inboxes]]\nname = "s"\nimap = { host = "h", username = "u" }\n'
    assert "password_env, password_command; found none" in error_of(text)


def test_inbox_needs_exactly_one_source() -> None:
    message = error_of('[[inboxes]]\nname = "x"\nmaildir = "a"\nmbox = "b"\n')
    assert "[inboxes.x]" in message
    assert "found maildir and mbox" in message


# --- values and grammars -----------------------------------------------------------------------


def test_bad_wall_clock_duration_names_the_key_and_value() -> None:
    message = error_of('[daemon]\npoll_interval = "5w"\n')
    assert '[daemon].poll_interval = "5w"' in message
    assert "s, m, h or d" in message


def test_bad_business_duration_names_the_key_and_value() -> None:
    message = error_of('[sla.tiers.gold]\nfirst_response = "2x"\n')
    assert '[sla.tiers.gold].first_response = "2x"' in message
    assert "m (minutes), h (hours), d (working days) or w" in message


def test_seconds_are_not_a_business_duration() -> None:
    assert '[sla.tiers.gold].follow_up = "30s"' in error_of('[sla.tiers.gold]\nfollow_up = "30s"\n')


def test_bad_time_zone_names_the_key_and_value() -> None:
    message = error_of('[daemon]\ntimezone = "Mars/Olympus"\n')
    assert '[daemon].timezone = "Mars/Olympus": unknown time zone' in message


def test_durations_and_sizes_parse() -> None:
    config = parse_config(
        '[daemon]\npoll_interval = "5m"\n[ingest]\ntext_cap = "1MB"\n'
        '[retention]\nbodies_after = "365d"\n[sla]\ndefault_tier = "gold"\n'
        '[sla.tiers.gold]\nfirst_response = "2h"\n'
    )
    assert config.daemon.poll_interval == timedelta(minutes=5)
    assert config.ingest.text_cap == 1024 * 1024
    assert config.retention.bodies_after == timedelta(days=365)
    assert config.sla.tiers["gold"].first_response == BusinessDuration(2, "h")
    assert str(config.sla.tiers["gold"].first_response) == "2h"
    for text, size in (('"16KB"', 16384), ('"4096"', 4096), ('"512B"', 512), ("2048", 2048)):
        assert parse_config(f"[ingest]\ntext_cap = {text}\n").ingest.text_cap == size
    assert '[ingest].text_cap = "16GB"' in error_of('[ingest]\ntext_cap = "16GB"\n')


def test_working_hours_grammar() -> None:
    text = '[calendars.x]\ntimezone = "UTC"\nhours = "Mon-Thu 09:00-17:00, Fri 09:00-13:00"\n'
    hours = parse_config(text).calendars["x"].hours
    assert len(hours) == 5
    assert hours[4] == WorkingHours(4, time(9), time(13))
    wrap = '[calendars.x]\ntimezone = "UTC"\nhours = "Sun-Thu 08:00-16:00"\n'
    assert [h.weekday for h in parse_config(wrap).calendars["x"].hours] == [0, 1, 2, 3, 6]


@pytest.mark.parametrize(
    "hours",
    [
        "Mon-Fri 17:00-09:00",
        "Mon-Fry 09:00-17:00",
        "Mon-Fri 9-5",
        "",
        "Mon-Fri 09:00-17:00, Fri 12:00-18:00",
    ],
)
def test_bad_working_hours_name_the_key_and_value(hours: str) -> None:
    message = error_of(f'[calendars.x]\ntimezone = "UTC"\nhours = "{hours}"\n')
    assert f'[calendars.x].hours = "{hours}"' in message


def test_holidays_are_a_known_country_or_dates() -> None:
    text = '[calendars.x]\ntimezone = "UTC"\nhours = "Mon-Fri 09:00-17:00"\nholidays = "NL"\n'
    calendar = parse_config(text).calendars["x"]
    assert calendar.holidays_country == "NL"
    assert calendar.is_holiday(date(2026, 12, 25))
    assert not calendar.is_holiday(date(2026, 12, 23))
    dates = text.replace('"NL"', '["2026-12-24", 2026-12-31]')
    assert parse_config(dates).calendars["x"].holiday_dates == (
        date(2026, 12, 24),
        date(2026, 12, 31),
    )
    message = error_of(text.replace('"NL"', '"XX"'))
    assert '[calendars.x].holidays = "XX": unknown country code' in message


def test_away_cover_must_be_someone_else_on_the_roster() -> None:
    away = 'away = { from = "2026-12-01", until = "2026-12-15", cover = "COVER" }'
    base = f'[[people]]\nname = "alice"\nemail = "alice@x.org"\n{away}\n'
    base += '[[people]]\nname = "bob"\nemail = "bob@x.org"\n'
    alice = parse_config(base.replace("COVER", "Bob")).people[0]
    assert alice.away is not None and alice.away.cover == "bob"
    assert alice.is_away(date(2026, 12, 15)) and not alice.is_away(date(2026, 12, 16))
    assert '[people.alice].away.cover = "alice": a person cannot cover' in error_of(
        base.replace("COVER", "alice")
    )
    assert '[people.alice].away.cover = "zed": not on the roster' in error_of(
        base.replace("COVER", "zed")
    )


# --- references between sections --------------------------------------------------------------


def test_unknown_tier_lists_the_configured_tiers() -> None:
    head = '[sla.tiers.gold]\nfirst_response = "2h"\n[sla.tiers.standard]\nfirst_response = "1d"\n'
    message = error_of(client('tier = "platinum"', head))
    assert (
        '[clients.acme].tier = "platinum": unknown tier; configured tiers: gold, standard'
        in message
    )


def test_unknown_calendar_is_named() -> None:
    head = '[calendars.office]\ntimezone = "UTC"\nhours = "Mon-Fri 09:00-17:00"\n'
    message = error_of(client('calendar = "us-east"', head))
    assert (
        '[clients.acme].calendar = "us-east": unknown calendar; configured calendars: office'
        in message
    )
    assert '[sla].default_calendar = "nope"' in error_of('[sla]\ndefault_calendar = "nope"\n')


def test_unknown_addon_is_named() -> None:
    head = '[sla.addons.weekend]\nfollow_up = "1d"\n'
    message = error_of(client('addons = ["weeknd"]', head))
    assert (
        '[clients.acme].addons[0] = "weeknd": unknown addon; configured addons: weekend' in message
    )


def test_map_person_must_be_on_the_roster() -> None:
    message = error_of(client('map = { intake = "zed" }', ROSTER))
    assert '[clients.acme].map.intake = "zed": not on the roster' in message


def test_map_stage_must_be_a_configured_stage() -> None:
    head = ROSTER + '[stages]\norder = ["intake", "engineering"]\n'
    message = error_of(client('map = { qa = "alice" }', head))
    assert '[clients.acme].map.qa = "alice": unknown stage' in message
    assert "intake, engineering" in message


def test_map_accepts_addresses_and_stores_roster_names() -> None:
    head = ROSTER + '[stages]\norder = ["intake", "QA"]\n'
    config = parse_config(client('map = { intake = "a.smith@example.com", qa = "carol" }', head))
    assert dict(config.clients[0].map) == {"intake": "alice", "QA": "Carol"}


def test_two_people_sharing_an_address_is_an_error() -> None:
    text = (
        ROSTER
        + '[[people]]\nname = "dave"\nemail = "dave@example.com"\naliases = ["Bob@Example.com"]\n'
    )
    message = error_of(text)
    assert '[people.dave].aliases[0] = "bob@example.com": already used by person "bob"' in message


def test_two_clients_claiming_a_domain_is_an_error() -> None:
    text = client("") + '[[clients]]\nname = "other"\ndomains = ["ACME.com"]\n'
    assert '[clients.other].domains[0] = "acme.com": already claimed by client "acme"' in error_of(
        text
    )


def test_tiers_without_standard_need_a_default_tier() -> None:
    assert "[sla].default_tier is missing" in error_of('[sla.tiers.gold]\nfirst_response = "2h"\n')


# --- defaults and the shipped files ------------------------------------------------------------


def test_empty_file_loads_with_defaults(tmp_path: Path) -> None:
    config = parse_config("", base_dir=tmp_path)
    assert config.daemon.database == tmp_path / "maildaemon.db"
    assert config.daemon.timezone == "UTC"
    assert config.daemon.poll_interval == timedelta(seconds=60)
    assert config.ingest.text_cap == 16 * 1024
    assert config.inboxes == () and config.people == () and config.clients == ()
    assert config.sla.default_tier == "standard"
    assert config.sla.tiers["standard"].first_response == BusinessDuration(1, "d")
    assert config.sla.default_calendar is None
    assert config.digest.time == time(8, 0) and config.digest.delivery is None
    assert config.threading.subject_fallback and not config.alerts.enabled
    assert config.retention.bodies_after is None


def test_example_config_loads() -> None:
    config = load_config(ROOT / "config" / "example.toml")
    assert config.source.endswith("example.toml")
    assert config.client_by_name("ACME") is not None
    assert config.inbox_by_name("alice-sent") is not None
    assert config.digest.delivery is not None and config.digest.delivery.kind == "smtp"
    assert config.daemon.database == ROOT / "config" / "maildaemon.db"


def test_starter_config_loads_and_is_the_template_file() -> None:
    template = ROOT / "maildaemon" / "templates" / "starter.toml"
    assert template.read_text(encoding="utf-8") == STARTER_CONFIG
    tomllib.loads(STARTER_CONFIG)
    config = parse_config(STARTER_CONFIG)
    assert config.inboxes and config.people and config.clients and config.calendars
    sections = "[daemon] [ingest] [[inboxes]] [team] [[people]] [[clients]] [sla] [sla.tiers. "
    sections += "[sla.addons. [calendars. [stages] [threading] [classification] [digest] [alerts]"
    for section in [*sections.split(), "[retention]"]:
        assert section in STARTER_CONFIG


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "maildaemon.toml"
    path.write_text('[daemon]\ndatabase = "data/md.db"\n[[inboxes]]\nname = "p"\nmbox = "p.mbox"\n')
    config = load_config(path)
    assert config.daemon.database == tmp_path / "data" / "md.db"
    assert config.inboxes[0].path == tmp_path / "p.mbox"


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config at .*run `maildaemon init`"):
        load_config(tmp_path / "nope.toml")


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "md.toml"
    path.write_text("[alerts]\nenabled = 1\n")
    with pytest.raises(ConfigError, match=r"md\.toml: \[alerts\]\.enabled = 1"):
        load_config(path)


def test_find_config_path_prefers_option_then_environment_then_cwd() -> None:
    env = {"MAILDAEMON_CONFIG": "/etc/md.toml"}
    assert find_config_path("/x.toml", env) == Path("/x.toml")
    assert find_config_path(None, env) == Path("/etc/md.toml")
    assert find_config_path(None, {}) == Path("maildaemon.toml")


# --- printing back and fingerprint -------------------------------------------------------------


def test_render_config_redacts_commands_and_keeps_env_names() -> None:
    config = load_config(ROOT / "config" / "example.toml")
    text = render_config(config)
    assert "oauth2l" not in text
    assert 'token_command = "<redacted>"' in text
    assert "SUPPORT_IMAP_PASSWORD" in text
    imap = '{ host = "h", username = "u", password_command = "pass show imap" }'
    secret = f'[[inboxes]]\nname = "s"\nimap = {imap}\n'
    assert "pass show" not in render_config(parse_config(secret))
    tomllib.loads(text)


def test_render_config_round_trips() -> None:
    config = load_config(ROOT / "config" / "example.toml")
    again = parse_config(render_config(config).replace("<redacted>", _token_command(config)))
    assert again.fingerprint == config.fingerprint
    assert again.people == config.people and again.calendars == config.calendars


def _token_command(config: Config) -> str:
    imap = next(i.imap for i in config.inboxes if i.imap and i.imap.token_command)
    assert imap is not None and imap.token_command is not None
    return imap.token_command


def test_fingerprint_follows_content_not_comments() -> None:
    text = '[sla.tiers.standard]\nfirst_response = "1d"\n'
    base = parse_config(text).fingerprint
    assert parse_config("# a comment\n\n" + text.replace("\n", "   # note\n")).fingerprint == base
    assert parse_config(text.replace('"1d"', '"2d"')).fingerprint != base
    assert len(base) == 64


# --- lookups -----------------------------------------------------------------------------------


def test_client_for_address_exact_address_beats_domain_and_subdomains_match() -> None:
    text = (
        client('addresses = ["ceo@gmail.com"]')
        + '[[clients]]\nname = "personal"\naddresses = ["boss@acme.com"]\n'
        + '[[clients]]\nname = "acme-eu"\ndomains = ["eu.acme.com"]\n'
    )
    config = parse_config(text)

    def name(addr: str) -> str | None:
        found = config.client_for_address(addr)
        return found.name if found else None

    assert name("ceo@gmail.com") == "acme"
    assert name("someone@gmail.com") is None
    assert name("Boss@ACME.com") == "personal"
    assert name("x@acme.com") == "acme"
    assert name("x@mail.acme.com") == "acme"
    assert name("x@de.eu.acme.com") == "acme-eu"
    assert name("x@notacme.com") is None
    assert config.client_by_name("Acme-EU") is config.clients[2]


def test_resolve_person_by_name_address_alias_and_unique_local_part() -> None:
    config = parse_config(ROSTER)

    def name(token: str) -> str | None:
        found = config.resolve_person(token)
        return found.name if found else None

    assert name("ALICE") == "alice"
    assert name("carol") == "Carol"
    assert name("bob@example.com") == "bob"
    assert name("A.Smith@example.com") == "alice"
    assert name("a.smith") == "alice"
    assert name("alice") == "alice"  # two addresses of one person share the local part
    assert name("bob") == "bob"  # a roster name wins over an ambiguous local part
    assert name("nobody") is None
    ambiguous = ROSTER.replace('name = "bob"', 'name = "robert"')
    assert parse_config(ambiguous).resolve_person("bob") is None


def test_person_lookups_by_address_and_name() -> None:
    config = parse_config(ROSTER)
    person = config.person_for_address("Alice@Other.org")
    assert person is not None and person.name == "alice"
    assert person.addresses == ("alice@example.com", "a.smith@example.com", "alice@other.org")
    assert config.person_by_name("CAROL") is config.people[2]
    assert config.person_by_name("alice@example.com") is None


def test_is_team_address_by_roster_shared_domain_and_subdomain() -> None:
    config = parse_config(ROSTER)
    assert config.is_team_address("bob@partner.net")  # an alias on the roster
    assert config.is_team_address("support@example.com")
    assert config.is_shared_address("Support@Example.com")
    assert not config.is_shared_address("alice@example.com")
    assert config.is_team_address("stranger@example.com")
    assert config.is_team_address("noc@mail.example.com")
    assert not config.is_team_address("x@notexample.com")
    assert not config.is_team_address("x@example.com.evil.org")


def test_is_ignored_by_address_and_list_id() -> None:
    config = parse_config(
        '[classification]\nignore = ["Newsletter@Vendor.example", "list:<Announce.Vendor.example>"]'
    )
    assert config.is_ignored("newsletter@vendor.example", None)
    assert config.is_ignored(None, "announce.vendor.example")
    assert config.is_ignored("someone@else.org", "ANNOUNCE.vendor.example")
    assert not config.is_ignored("someone@vendor.example", "other.vendor.example")
    assert not config.is_ignored(None, None)


def test_people_default_to_the_daemon_time_zone() -> None:
    text = '[daemon]\ntimezone = "Europe/Amsterdam"\n' + ROSTER
    text = text.replace(
        'email = "bob@example.com"', 'email = "bob@example.com"\ntimezone = "Asia/Tokyo"'
    )
    config = parse_config(text)
    assert [p.timezone for p in config.people] == [
        "Europe/Amsterdam",
        "Asia/Tokyo",
        "Europe/Amsterdam",
    ]
