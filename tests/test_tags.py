"""Subject tags as commands (SPEC 6.1): what each tag means, and which tags are new."""

from __future__ import annotations

from datetime import date

import pytest

from maildaemon.config import Config, parse_config
from maildaemon.durations import BusinessDuration
from maildaemon.tags import Tag, TagKind, new_tags, parse_due, parse_tags

CONFIG = """
[[people]]
name = "alice"
email = "alice@example.com"
aliases = ["a.smith@example.com"]

[[people]]
name = "bob"
email = "bob@example.com"

[[people]]
name = "carol"
email = "carol@example.com"

[[people]]
name = "sam.lee"
email = "sam@example.com"

[[people]]
name = "sam.ortiz"
email = "sam@partner.example"

[stages]
order = ["intake", "Engineering", "qa"]

[[clients]]
name = "Acme"
domains = ["acme.com"]
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG)


def t(kind: TagKind, value: str | None, raw: str, key: str, known: bool = True) -> Tag:
    return Tag(kind, value, raw, known, key)


PARSE_CASES: list[tuple[str, tuple[Tag, ...]]] = [
    ("Help [owner:alice]", (t("owner", "alice", "[owner:alice]", "owner:alice"),)),
    ("Help [OWNER:Alice]", (t("owner", "alice", "[OWNER:Alice]", "owner:alice"),)),
    ("[@bob] Help", (t("owner", "bob", "[@bob]", "owner:bob"),)),
    ("Help [@BOB]", (t("owner", "bob", "[@BOB]", "owner:bob"),)),
    ("x [ owner: alice ]", (t("owner", "alice", "[ owner: alice ]", "owner:alice"),)),
    ("x [@ carol ]", (t("owner", "carol", "[@ carol ]", "owner:carol"),)),
    ("x [owner:me]", (t("owner", "me", "[owner:me]", "owner:me"),)),
    ("x [@Me]", (t("owner", "me", "[@Me]", "owner:me"),)),
    ("x [owner:none]", (t("owner", "none", "[owner:none]", "owner:none"),)),
    ("x [@NONE]", (t("owner", "none", "[@NONE]", "owner:none"),)),
    # an address, an alias, a unique local part
    (
        "x [owner:alice@example.com]",
        (t("owner", "alice", "[owner:alice@example.com]", "owner:alice"),),
    ),
    (
        "x [owner:A.Smith@example.com]",
        (t("owner", "alice", "[owner:A.Smith@example.com]", "owner:alice"),),
    ),
    ("x [@a.smith]", (t("owner", "alice", "[@a.smith]", "owner:alice"),)),
    (
        "x [@sam@partner.example]",
        (t("owner", "sam.ortiz", "[@sam@partner.example]", "owner:sam.ortiz"),),
    ),
    # unknown: an ambiguous local part, a stranger, an address not on the roster
    ("x [@sam]", (t("owner", "sam", "[@sam]", "owner:sam", known=False),)),
    ("x [owner:Zed]", (t("owner", "zed", "[owner:Zed]", "owner:zed", known=False),)),
    (
        "x [@zed@acme.com]",
        (t("owner", "zed@acme.com", "[@zed@acme.com]", "owner:zed@acme.com", known=False),),
    ),
    # stages and clients come back in their configured spelling
    ("x [stage:qa]", (t("stage", "qa", "[stage:qa]", "stage:qa"),)),
    (
        "x [Stage:ENGINEERING]",
        (t("stage", "Engineering", "[Stage:ENGINEERING]", "stage:engineering"),),
    ),
    (
        "x [stage:delivery]",
        (t("stage", "delivery", "[stage:delivery]", "stage:delivery", known=False),),
    ),
    ("x [client:acme]", (t("client", "Acme", "[client:acme]", "client:acme"),)),
    ("x [CLIENT: ACME ]", (t("client", "Acme", "[CLIENT: ACME ]", "client:acme"),)),
    (
        "x [client:globex]",
        (t("client", "globex", "[client:globex]", "client:globex", known=False),),
    ),
    # due dates and durations
    ("x [due:2026-12-01]", (t("due", "2026-12-01", "[due:2026-12-01]", "due:2026-12-01"),)),
    ("x [due:3d]", (t("due", "3d", "[due:3d]", "due:3d"),)),
    ("x [DUE: 4H]", (t("due", "4h", "[DUE: 4H]", "due:4h"),)),
    ("x [due:03d]", (t("due", "03d", "[due:03d]", "due:3d"),)),
    ("x [due:tomorrow]", (t("due", "tomorrow", "[due:tomorrow]", "due:tomorrow", known=False),)),
    (
        "x [due:2026-02-30]",
        (t("due", "2026-02-30", "[due:2026-02-30]", "due:2026-02-30", known=False),),
    ),
    # close, ack, ref
    ("x [done]", (t("close", None, "[done]", "close"),)),
    ("x [Closed]", (t("close", None, "[Closed]", "close"),)),
    ("x [RESOLVED]", (t("close", None, "[RESOLVED]", "close"),)),
    ("x [ack]", (t("ack", None, "[ack]", "ack"),)),
    ("x [ ACK ]", (t("ack", None, "[ ACK ]", "ack"),)),
    ("Re: x [#42]", (t("ref", "42", "[#42]", "ref:42"),)),
    ("Re: x [#042]", (t("ref", "42", "[#042]", "ref:42"),)),
    # foreign brackets are not tags
    ("[PATCH v2 3/7] ext4: fix", ()),
    ("[EXTERNAL] Invoice [ext4] [owner] [#abc] [done it]", ()),
    ("Help", ()),
    # several tags, left to right, foreign brackets skipped
    (
        "[EXTERNAL] Re: Outage [stage:qa] [@bob] [PATCH] [due:1w] [done]",
        (
            t("stage", "qa", "[stage:qa]", "stage:qa"),
            t("owner", "bob", "[@bob]", "owner:bob"),
            t("due", "1w", "[due:1w]", "due:1w"),
            t("close", None, "[done]", "close"),
        ),
    ),
]


@pytest.mark.parametrize(("subject", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_tags(config: Config, subject: str, expected: tuple[Tag, ...]) -> None:
    assert parse_tags(subject, config) == expected


NEW_CASES: list[tuple[str, str | None, tuple[str, ...]]] = [
    ("Re: Help [owner:alice]", "Help [owner:alice]", ()),
    ("Re: Help [@alice]", "Help [owner:Alice]", ()),
    ("Re: Help [owner:alice@example.com]", "Help [@a.smith]", ()),
    ("Re: Help [owner:bob]", "Help [owner:alice]", ("[owner:bob]",)),
    ("Re: Help [owner:alice] [ack]", "Help [owner:alice]", ("[ack]",)),
    ("Re: Help [closed]", "Help [done]", ()),
    ("Re: Help [due:3d]", "Help [due:2d]", ("[due:3d]",)),
    ("Re: Help [@zed]", "Help [owner:Zed]", ()),
    ("Help [stage:qa] [@bob]", None, ("[stage:qa]", "[@bob]")),
    ("Re: Help [stage:qa] [@bob]", "Help", ("[stage:qa]", "[@bob]")),
]


@pytest.mark.parametrize(("subject", "parent", "expected"), NEW_CASES)
def test_new_tags(
    config: Config, subject: str, parent: str | None, expected: tuple[str, ...]
) -> None:
    assert tuple(tag.raw for tag in new_tags(subject, parent, config)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", date(2026, 12, 1)),
        ("3d", BusinessDuration(3, "d")),
        ("4h", BusinessDuration(4, "h")),
        ("90m", BusinessDuration(90, "m")),
        ("1w", BusinessDuration(1, "w")),
        (" 2D ", BusinessDuration(2, "d")),
        ("0d", None),
        ("3y", None),
        ("2026-13-01", None),
        ("20261201", None),
        ("next friday", None),
        ("", None),
    ],
)
def test_parse_due(text: str, expected: date | BusinessDuration | None) -> None:
    assert parse_due(text) == expected
