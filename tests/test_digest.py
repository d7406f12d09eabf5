"""The digest's content (SPEC 9), pure: a known set of tasks in, the sections out; and its
rendering: text, HTML escaping, headers that mail text cannot break."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from maildaemon import digest, digest_render
from maildaemon.config import Config, load_config

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tue 16:00 in Amsterdam, 10:00 in New York

CONFIG = """\
timezone = "Europe/Amsterdam"
poll_interval = "60s"

[[inboxes]]
name = "support"
maildir = "support"

[[inboxes]]
name = "partners"
maildir = "partners"

[[inboxes]]
name = "old"
maildir = "old"

[[inboxes]]
name = "new"
maildir = "new"

[team]
domains = ["example.com"]

[[people]]
name = "alice"
email = "alice@example.com"
role = "support"
timezone = "America/New_York"

[[people]]
name = "bob"
email = "bob@example.com"
role = "engineering"
timezone = "Europe/Amsterdam"

[[people]]
name = "carol"
email = "carol@example.com"
manager = true
timezone = "Europe/Amsterdam"

[[people]]
name = "dave"
email = "dave@example.com"
away = { from = "2026-11-23", until = "2026-12-04", cover = "bob" }

[[people]]
name = "erin"
email = "erin@example.com"
active = false

[[people]]
name = "frank"
email = "frank@example.com"

[[clients]]
name = "acme"
domains = ["acme.com"]
tier = "gold"
calendar = "office"
map = { intake = "alice", engineering = "bob", qa = "carol" }

[[clients]]
name = "globex"
domains = ["globex.de"]
calendar = "office"
map = { intake = "alice", engineering = "bob" }

[sla.tiers.gold]
first_response = "2h"
follow_up = "4h"
handoff_ack = "2h"

[sla.tiers.standard]
first_response = "1d"
follow_up = "2d"
handoff_ack = "1d"

[sla]
default_tier = "standard"
default_calendar = "office"

[calendars.office]
timezone = "Europe/Amsterdam"
hours = "Mon-Fri 09:00-17:30"

[stages]
order = ["intake", "engineering", "qa"]
"""


def task(id: int, **kw: Any) -> dict[str, Any]:
    """A SPEC 10 task object with quiet defaults."""
    base: dict[str, Any] = {
        "id": id,
        "subject": f"Task {id}",
        "root_message_id": f"<t{id}@acme.com>",
        "client": "acme",
        "owner": None,
        "status": "open",
        "stage": None,
        "opened_at": "2026-11-24T08:00:00Z",
        "last_activity_at": "2026-11-24T08:00:00Z",
        "due_at": None,
        "overdue": False,
        "orphaned": False,
        "orphan_reason": None,
        "pending_handoff": None,
        "messages": 1,
        "inboxes": ["support"],
        "last_from": "Pat Client",
    }
    return base | kw


TASKS = [
    task(1, owner=None, opened_at="2026-11-20T09:00:00Z", due_at="2026-11-21T09:00:00Z",
         overdue=True, orphaned=True, orphan_reason="unowned"),
    task(2, owner=None, client="globex", opened_at="2026-11-24T10:00:00Z",
         due_at="2026-11-26T10:00:00Z", orphaned=True, orphan_reason="unowned"),
    task(3, owner="bob", due_at="2026-11-24T09:00:00Z", overdue=True, stage="engineering"),
    task(4, owner="bob", client="globex", due_at="2026-11-23T12:00:00Z", overdue=True),
    task(5, owner="alice", client="globex", due_at="2026-11-24T12:00:00Z", overdue=True,
         pending_handoff={"from": "bob", "to": "alice", "at": "2026-11-23T12:00:00Z",
                          "due_at": "2026-11-24T12:00:00Z", "overdue": True}),
    task(6, owner="erin", orphaned=True, orphan_reason="owner erin is inactive"),
    task(7, owner="bob", due_at="2026-11-24T16:00:00Z"),
    task(8, owner="alice", due_at="2026-11-24T20:00:00Z"),
    task(9, owner="alice", status="waiting", last_activity_at="2026-11-23T08:00:00Z"),
    task(10, owner="dave", status="waiting"),
    task(11, owner="bob", status="closed", due_at="2026-11-20T09:00:00Z"),
]  # fmt: skip
INBOXES = [
    {
        "inbox": "support",
        "last_sync_at": "2026-11-24T14:59:00Z",
        "last_error": None,
        "last_error_at": None,
    },
    {
        "inbox": "partners",
        "last_sync_at": "2026-11-24T10:00:00Z",
        "last_error": "login refused for partners@example.com",
        "last_error_at": "2026-11-24T14:58:00Z",
    },
    {
        "inbox": "old",
        "last_sync_at": "2026-11-24T13:00:00Z",
        "last_error": None,
        "last_error_at": None,
    },
]  # fmt: skip  ("new" never synced)
FAILED = [
    {"kind": "personal", "recipient": "bob", "key": "2026-11-24", "state": "failed",
     "attempts": 3, "last_error": "smtp 127.0.0.1:25: connect failed", "last_error_at":
     "2026-11-24T07:10:00Z", "sent_at": None},
]  # fmt: skip


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return load_config(write_config(CONFIG))


def build(config: Config, tasks: list[dict[str, Any]] | None = None) -> dict[tuple[str, str], Any]:
    inputs = digest.Inputs(
        tasks=TASKS if tasks is None else tasks,
        running={3: ("first_response", "2026-11-24T09:00:00Z"), 5: ("handoff_ack", "x")},
        inboxes=INBOXES,
        failed=FAILED,
    )
    return {(d.person, d.kind): d for d in digest.build(config, inputs, NOW)}


def ids(section: digest.Section) -> list[Any]:
    return [i["id"] for i in section.items]


# -- who gets what ----------------------------------------------------------------------------


def test_recipients_are_the_available_people_and_the_managers_twice(config):
    got = build(config)
    assert set(got) == {
        ("alice", "personal"),
        ("bob", "personal"),
        ("carol", "personal"),
        ("carol", "team"),
        ("frank", "personal"),
    }  # dave is away, erin inactive: nothing for them
    assert got[("frank", "personal")].empty and got[("carol", "personal")].empty
    assert not got[("carol", "team")].empty
    assert got[("alice", "personal")].day == date(2026, 11, 24)


def test_personal_sections_in_order_with_handoffs_and_covered_work(config):
    got = build(config)
    alice = got[("alice", "personal")]
    assert [s.key for s in alice.sections] == ["overdue", "today", "handoffs", "waiting"]
    # Task 5 is overdue too, but waits for alice's acknowledgement: listed once, there.
    assert ids(alice.section("overdue")) == []
    assert ids(alice.section("today")) == [8]  # 20:00Z is 15:00 on alice's day in New York
    assert ids(alice.section("handoffs")) == [5]
    assert alice.section("handoffs").items[0]["handoff_from"] == "bob"
    assert ids(alice.section("waiting")) == [9]
    bob = got[("bob", "personal")]
    assert ids(bob.section("overdue")) == [4, 3]  # the longest overdue first
    assert ids(bob.section("today")) == [7]
    # dave is away and bob covers: dave's task is in bob's digest, marked as such.
    assert ids(bob.section("waiting")) == [10]
    assert bob.section("waiting").items[0]["covering_for"] == "dave"
    assert bob.subject == "2 overdue, 1 due today, 1 waiting for you — Tue 24 Nov"
    line = bob.section("overdue").items[1]
    assert line["due"] == "first response overdue by 6h"
    assert line["last_from"] == "Pat Client" and line["age"] == "7h"


def test_team_sections_each_against_the_known_dataset(config):
    team = build(config)[("carol", "team")]
    assert ids(team.section("unowned")) == [1, 2]  # oldest first
    assert [i["command"] for i in team.section("unowned").items] == [
        "maildaemon assign 1 alice",  # the map's intake owner of acme
        "maildaemon assign 2 alice",
    ]
    overdue = team.section("overdue").items
    assert [(i["client"], i["id"]) for i in overdue] == [
        ("acme", 1),
        ("acme", 3),
        ("globex", 4),
        ("globex", 5),
    ]  # by client, then the longest overdue first
    assert all(i["command"] == f"maildaemon show {i['id']}" for i in overdue)
    handoffs = team.section("handoffs").items
    assert [(i["id"], i["handoff_from"], i["handoff_to"]) for i in handoffs] == [
        (5, "bob", "alice")
    ]
    orphaned = team.section("orphaned").items
    assert [(i["id"], i["reason"]) for i in orphaned] == [(6, "owner erin is inactive")]
    assert orphaned[0]["command"] == "maildaemon assign 6 alice"
    # 4 business hours of the office calendar from Tue 16:00: until Wed 11:30 (10:30Z).
    assert ids(team.section("at_risk")) == [7, 8]
    inboxes = {i["inbox"]: i["reason"] for i in team.section("inboxes").items}
    assert set(inboxes) == {"partners", "old", "new"}
    assert inboxes["partners"].startswith("failing since 2026-11-24T14:58:00Z: login refused")
    assert inboxes["old"] == "no successful sync for 2h"
    assert inboxes["new"] == "never synced"
    (failed,) = team.section("deliveries").items
    assert (failed["recipient"], failed["attempts"]) == ("bob", 3)
    (hole,) = team.section("holes").items
    assert (hole["client"], hole["stage"]) == ("globex", "qa")
    load = {r["owner"]: (r["open"], r["waiting"], r["overdue"], r["note"]) for r in team.load}
    assert load == {
        "alice": (2, 1, 1, None),
        "bob": (3, 0, 2, None),
        "carol": (0, 0, 0, None),
        "dave": (0, 1, 0, "away until 2026-12-04, bob covers"),
        "frank": (0, 0, 0, None),
        "erin": (1, 0, 0, "inactive"),
    }
    assert [r["owner"] for r in team.load][:2] == ["alice", "bob"]  # the busiest first (3 each)
    assert team.board is not None
    assert team.board["clients"][0]["cells"]["engineering"]["open_tasks"] == 1
    assert team.subject == (
        "Team: 2 unowned, 4 overdue, 1 stuck handoff, 1 orphaned, 2 at risk, "
        "3 inboxes failing, 1 failed delivery, 1 map hole — Tue 24 Nov"
    )


def test_a_long_section_is_capped_with_the_command_for_the_rest(config):
    many = [task(100 + n, owner=None, opened_at=f"2026-11-2{n % 4}T08:00:00Z") for n in range(70)]
    team = build(config, many)[("carol", "team")]
    unowned = team.section("unowned")
    assert (unowned.total, len(unowned.items)) == (70, digest.LIMIT)
    assert unowned.more == "maildaemon tasks --unowned"
    text = digest_render.text(team, NOW)
    assert "UNOWNED (70)" in text and "… 20 more: maildaemon tasks --unowned" in text


def test_nothing_anywhere_is_an_empty_team_digest(config):
    quiet = digest.Inputs(
        tasks=[],
        inboxes=[
            {"inbox": n, "last_sync_at": "2026-11-24T14:59:00Z", "last_error": None,
             "last_error_at": None}
            for n in ("support", "partners", "old", "new")
        ],
    )  # fmt: skip
    config_no_holes = config  # the globex qa hole remains: it is something to see
    team = next(d for d in digest.build(config_no_holes, quiet, NOW) if d.kind == "team")
    assert [s.key for s in team.sections if s.total] == ["holes"]
    alice = next(d for d in digest.build(config, quiet, NOW) if d.person == "alice")
    assert alice.empty and alice.subject == "Nothing due for you — Tue 24 Nov"


# -- when -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "due"),
    [
        # New York, digest at 08:00 local: 12:00Z while on EDT, 13:00Z after 1 Nov (EST).
        ("2026-10-30T11:59:00Z", None),
        ("2026-10-30T12:00:00Z", date(2026, 10, 30)),
        ("2026-11-02T12:30:00Z", None),  # 07:30 EST: the old offset would say 08:30
        ("2026-11-02T13:00:00Z", date(2026, 11, 2)),
        ("2026-11-03T04:59:00Z", date(2026, 11, 2)),  # 23:59 local: still that day
        ("2026-11-03T05:00:00Z", None),  # Tue 00:00 local: before the digest time
        ("2026-10-31T15:00:00Z", None),  # Saturday: not a digest day
    ],
)
def test_digest_time_follows_the_person_zone_across_dst(config, now, due):
    alice = config.person_by_name("alice")
    assert alice is not None
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert digest.due_day(config, alice, moment) == due


def test_amsterdam_digest_time_across_its_own_dst_change(config):
    bob = config.person_by_name("bob")
    assert bob is not None
    # Europe changed on 25 Oct 2026: 08:00 was 06:00Z on Fri 23 Oct, 07:00Z on Mon 26 Oct.
    at = lambda s: datetime.fromisoformat(s + "+00:00")  # noqa: E731
    assert digest.due_day(config, bob, at("2026-10-23T06:00:00")) == date(2026, 10, 23)
    assert digest.due_day(config, bob, at("2026-10-26T06:30:00")) is None
    assert digest.due_day(config, bob, at("2026-10-26T07:00:00")) == date(2026, 10, 26)


# -- rendering --------------------------------------------------------------------------------

NASTY = [
    task(1, owner="bob", subject="<script>alert('x')</script> & <b>bold</b>", due_at=None,
         status="waiting", last_from='Eve "<img src=x onerror=alert(1)>"'),
    task(2, owner="bob", subject="Hello\r\nBcc: victim@example.org\r\n\r\n<b>body</b>",
         status="waiting", client="acme\u202egnp.exe"),
]  # fmt: skip


def test_mail_text_is_escaped_in_html_and_cannot_break_lines_or_headers(config):
    bob = build(config, NASTY)[("bob", "personal")]
    page = digest_render.html(bob, NOW)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and "&lt;img src=x" in page
    assert "<b>bold</b>" not in page and "<b>body</b>" not in page
    assert "\u202e" not in page  # a bidi override cannot reorder what the reader sees
    text = digest_render.text(bob, NOW)
    assert not any(line.startswith("Bcc:") for line in text.splitlines())
    assert "Hello Bcc: victim@example.org <b>body</b>" in text  # one line, shown as text
    raw = digest_render.message(
        subject=bob.subject + "\r\nBcc: victim@example.org",  # even a hostile subject
        sender="maildaemon <maildaemon@example.com>",
        to=[("bob\r\nCc: x@example.org", "bob@example.com")],
        message_id="<m1@example.com>",
        date=NOW,
        body_text=text,
        body_html=page,
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"].endswith("Bcc: victim@example.org")  # inside the subject, harmless
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Precedence"] == "bulk"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "&lt;script&gt;" in msg.get_body(("html",)).get_content()


def test_html_has_a_table_per_section_and_the_map(config):
    team = build(config)[("carol", "team")]
    page = digest_render.html(team, NOW)
    assert page.count("<table") >= 8  # layout, and one per non-empty section, load, map
    for title in ("Unowned", "Overdue, by client", "Orphaned", "Responsibility map"):
        assert title in page
    assert "maildaemon assign 1 alice" in page
    assert "<strong>hole</strong>" in page
