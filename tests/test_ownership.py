"""Ownership replay (SPEC 6.1, 6.2, 6.3): a timeline in, an owner and the rule behind it out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildaemon.config import parse_config
from maildaemon.durations import BusinessDuration
from maildaemon.model import Address, Message
from maildaemon.ownership import Command, Ownership, Step, Verb, orphan_reason, replay

CONFIG = parse_config(
    """
[team]
domains = ["example.com"]
shared_addresses = ["support@example.com"]

[[people]]
name = "alice"
email = "alice@example.com"
role = "support"

[[people]]
name = "bob"
email = "bob@example.com"
role = "engineering"

[[people]]
name = "carol"
email = "carol@example.com"
role = "qa"
manager = true

[[people]]
name = "dave"
email = "dave@example.com"
away = { from = "2026-11-20", until = "2026-12-04", cover = "bob" }

[[people]]
name = "erin"
email = "erin@example.com"
active = false

[[people]]
name = "frank"
email = "frank@example.com"
away = { from = "2026-11-20", until = "2026-12-04" }

[stages]
order = ["intake", "engineering", "qa", "delivery"]

[[clients]]
name = "acme"
domains = ["acme.com"]
map = { intake = "alice", engineering = "bob", qa = "carol" }

[[clients]]
name = "globex"
domains = ["globex.de"]
map = { intake = "alice", engineering = "bob" }
"""
)

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
DAVE, ERIN, FRANK = "dave@example.com", "erin@example.com", "frank@example.com"
SUPPORT, OPS = "support@example.com", "ops@example.com"  # shared; team domain, not on the roster
JANE, HANS = "jane@acme.com", "hans@globex.de"  # clients
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday, before anyone is away
AWAY_DAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # dave and frank are away
SUBJECT = "Printer broken"


def msg(
    frm: str,
    to: list[str] | tuple[str, ...] = (),
    cc: list[str] | tuple[str, ...] = (),
    subject: str = f"Re: {SUBJECT}",
    auto: bool = False,
) -> Message:
    """A message with only what the replay reads; ``timeline`` gives it an id and a date."""
    return Message(
        message_id="",
        synthetic_id=False,
        in_reply_to=(),
        references=(),
        from_=Address("", frm),
        to=tuple(Address("", a) for a in to),
        cc=tuple(Address("", a) for a in cc),
        reply_to=(),
        date=T0,
        date_is_fallback=False,
        subject=subject,
        base_subject=subject,
        normalized_subject=subject.lower(),
        is_forward=False,
        thread_index=None,
        auto_submitted="auto-replied" if auto else None,
        precedence=None,
        x_autoreply=auto,
        list_id=None,
        text="",
        reply_text="",
        attachments=(),
        defects=(),
        size=0,
    )


@dataclass(frozen=True)
class Unlinked:
    """A message whose parent was not seen: its parent_subject is None."""

    message: Message


@dataclass(frozen=True)
class Cmd:
    """A CLI command; ``timeline`` gives it its moment."""

    actor: str
    verb: Verb
    arg: str | None = None
    note: str | None = None


Item = Message | Unlinked | Cmd


def kind_of(m: Message) -> str:
    if m.x_autoreply:
        return "auto"
    return "team" if m.from_ and CONFIG.is_team_address(m.from_.email) else "client"


def timeline(
    *items: Item, start: datetime = T0, gap: timedelta = timedelta(minutes=10)
) -> tuple[list[Step], list[Command]]:
    """Steps and commands ``gap`` apart; each message replies to the message before it."""
    steps: list[Step] = []
    commands: list[Command] = []
    parent: str | None = None
    for i, item in enumerate(items):
        at = start + i * gap
        if isinstance(item, Cmd):
            commands.append(Command(at, item.actor, item.verb, item.arg, item.note))
            continue
        m = item.message if isinstance(item, Unlinked) else item
        m = replace(m, message_id=f"<{i}@test>", date=at)
        steps.append(Step(at, m, kind_of(m), None if isinstance(item, Unlinked) else parent))
        parent = m.subject
    return steps, commands


def run(
    *items: Item,
    client: str | None = "acme",
    start: datetime = T0,
    gap: timedelta = timedelta(minutes=10),
) -> Ownership:
    steps, commands = timeline(*items, start=start, gap=gap)
    return replay(steps, commands, CONFIG, client)


def opening(frm: str = JANE) -> Message:
    """The client's first message, to the shared inbox."""
    return msg(frm, [SUPPORT], subject=SUBJECT)


def claimed(by: str = ALICE, client: str = JANE) -> tuple[Message, Message]:
    """A client message and its first response: ``by`` owns the task."""
    return opening(client), msg(by, [client])


@dataclass(frozen=True)
class Expect:
    owner: str | None
    pending: str | None  # the handoff's new owner, waiting for acknowledgement
    stage: str | None
    status: str
    flagged: bool
    rule: str | None  # the rule of the last event; None: no event at all
    client: str | None = "acme"
    due: date | BusinessDuration | None = None


def case(id_: str, items: list[Item], expect: Expect, **kw: object) -> object:
    """One timeline; ``kw`` goes to ``run`` (client, start, gap)."""
    return pytest.param(items, kw, expect, id=id_)


def handoff(owner: str, rule: str, status: str = "waiting", stage: str | None = None) -> Expect:
    return Expect(owner, owner, stage, status, False, rule)


def owned(owner: str | None, rule: str | None, status: str = "waiting") -> Expect:
    return Expect(owner, None, None, status, False, rule)


FIRST = "first responder"
ADDRESSING = "handoff by addressing"
CLIENT_TO_ONE = "client addressed one person"
ACK = "ack: the new owner wrote"

CASES = [
    # -- SPEC 6.2 rule 1: first responder -----------------------------------------------
    case("client-message-alone-is-unowned", [opening()], owned(None, None, "open")),
    case("first-responder-claims-unowned-task", [*claimed()], owned("alice", FIRST)),
    case(
        "first-responder-with-client-only-in-cc",
        [opening(), msg(ALICE, [SUPPORT], cc=[JANE])],
        owned("alice", FIRST),
    ),
    case(
        "first-responder-beats-addressing-when-client-in-cc",
        [opening(), msg(ALICE, [BOB], cc=[JANE])],
        owned("alice", FIRST),
    ),
    case(
        "shared-address-answering-client-never-owns",
        [opening(), msg(SUPPORT, [JANE])],
        owned(None, None),
    ),
    case(
        "team-domain-sender-off-roster-never-owns",
        [opening(), msg(OPS, [JANE])],
        owned(None, None),
    ),
    case(
        "auto-reply-from-team-member-does-not_claim",
        [opening(), msg(ALICE, [JANE], auto=True)],
        owned(None, None, "open"),
    ),
    case(
        "second-responder-does-not-take-over",
        [*claimed(), msg(JANE, [SUPPORT]), msg(BOB, [JANE])],
        owned("alice", FIRST),
    ),
    case(
        "internal-message-leaves-status-alone",
        [*claimed(), msg(ALICE, [SUPPORT])],
        owned("alice", FIRST, "waiting"),
    ),
    # -- rule 2: handoff by addressing ----------------------------------------------------
    case(
        "owner-hands-off-by-addressing", [*claimed(), msg(ALICE, [BOB])], handoff("bob", ADDRESSING)
    ),
    case(
        "owner-hands-off-with-colleague-in-cc",
        [*claimed(), msg(ALICE, [BOB], cc=[CAROL, SUPPORT])],
        handoff("bob", ADDRESSING),
    ),
    case(
        "owner-in-to-beside-one-other-person-hands-off",
        [*claimed(), msg(ALICE, [ALICE, BOB])],
        handoff("bob", ADDRESSING),
    ),
    case(
        "cc-never-hands-off", [*claimed(), msg(ALICE, [SUPPORT], cc=[BOB])], owned("alice", FIRST)
    ),
    case(
        "two-people-in-to-is-no-handoff",
        [*claimed(), msg(ALICE, [BOB, CAROL])],
        owned("alice", FIRST),
    ),
    case(
        "client-in-cc-is-no-handoff",
        [*claimed(), msg(ALICE, [BOB], cc=[JANE])],
        owned("alice", FIRST),
    ),
    case(
        "client-in-to-beside-colleague-is-no-handoff",
        [*claimed(), msg(ALICE, [BOB, JANE])],
        owned("alice", FIRST),
    ),
    case("manager-hands-off", [*claimed(), msg(CAROL, [BOB])], handoff("bob", ADDRESSING)),
    case(
        "non-owner-non-manager-writing-to-colleague-changes-nothing",
        [*claimed(), msg(BOB, [DAVE])],
        owned("alice", FIRST),
    ),
    case(
        "unowned-task-handed-off-by-shared-address",
        [opening(), msg(SUPPORT, [BOB])],
        handoff("bob", ADDRESSING, "open"),
    ),
    case(
        "handoff-to-current-owner-changes-nothing",
        [*claimed(), msg(CAROL, [ALICE])],
        owned("alice", FIRST),
    ),
    case(
        "acknowledging-reply-to-colleague-is-not-a-handoff-back",
        [*claimed(), msg(ALICE, [BOB]), msg(BOB, [ALICE])],
        owned("bob", ACK),
    ),
    case(
        "new-owner-hands-on-after-acknowledging",
        [*claimed(), msg(ALICE, [BOB]), msg(BOB, [JANE]), msg(BOB, [CAROL])],
        handoff("carol", ADDRESSING),
    ),
    case(
        "previous-owner-cannot-hand-off-again",
        [*claimed(), msg(ALICE, [BOB]), msg(ALICE, [CAROL])],
        handoff("bob", ADDRESSING),
    ),
    # -- rule 3: a client addresses a person ----------------------------------------------
    case(
        "client-addresses-one-person-pending",
        [msg(JANE, [ALICE], cc=[SUPPORT], subject=SUBJECT)],
        handoff("alice", CLIENT_TO_ONE, "open"),
    ),
    case(
        "client-addresses-one-person-and-shared-inbox",
        [msg(JANE, [ALICE, SUPPORT], subject=SUBJECT)],
        handoff("alice", CLIENT_TO_ONE, "open"),
    ),
    case(
        "client-addresses-two-people-no-change",
        [msg(JANE, [ALICE, BOB], subject=SUBJECT)],
        owned(None, None, "open"),
    ),
    case(
        "client-cc-to-a-person-no-change",
        [msg(JANE, [SUPPORT], cc=[BOB], subject=SUBJECT)],
        owned(None, None, "open"),
    ),
    case(
        "client-addressing-owned-task-changes-nothing",
        [*claimed(), msg(JANE, [BOB])],
        owned("alice", FIRST, "open"),
    ),
    # -- rule 4: acknowledgement ----------------------------------------------------------
    case(
        "new-owner-acknowledges-by-writing-to-client",
        [msg(JANE, [ALICE], subject=SUBJECT), msg(ALICE, [JANE])],
        owned("alice", ACK),
    ),
    case(
        "new-owner-acknowledges-by-internal-note",
        [*claimed(), msg(ALICE, [BOB]), msg(BOB, [SUPPORT])],
        owned("bob", ACK),
    ),
    case(
        "out-of-office-of-new-owner-does-not-acknowledge",
        [*claimed(), msg(ALICE, [BOB]), msg(BOB, [ALICE], auto=True)],
        handoff("bob", ADDRESSING),
    ),
    case(
        "someone-else-writing-does-not-acknowledge",
        [*claimed(), msg(ALICE, [BOB]), msg(CAROL, [SUPPORT])],
        handoff("bob", ADDRESSING),
    ),
    case(
        "ack-tag-reply-to-handing-colleague-acknowledges",
        [*claimed(), msg(ALICE, [BOB]), msg(BOB, [ALICE], subject=f"Re: {SUBJECT} [ack]")],
        owned("bob", ACK),
    ),
    case(
        "ack-tag-from-someone-else-acknowledges-nothing",
        [*claimed(), msg(ALICE, [BOB]), msg(CAROL, [SUPPORT], subject=f"Re: {SUBJECT} [ack]")],
        handoff("bob", ADDRESSING),
    ),
    # -- SPEC 6.1: owner tags -------------------------------------------------------------
    case(
        "owner-tag-hands-off",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:bob]")],
        handoff("bob", "tag [owner:bob]"),
    ),
    case(
        "at-tag-hands-off",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [@Bob]")],
        handoff("bob", "tag [@Bob]"),
    ),
    case(
        "owner-tag-by-address",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"[owner:bob@example.com] {SUBJECT}")],
        handoff("bob", "tag [owner:bob@example.com]"),
    ),
    case(
        "owner-tag-suppresses-addressing-rule",
        [*claimed(), msg(ALICE, [CAROL], subject=f"Re: {SUBJECT} [owner:bob]")],
        handoff("bob", "tag [owner:bob]"),
    ),
    case(
        "owner-me-claims-without-pending",
        [opening(), msg(BOB, [SUPPORT], subject=f"Re: {SUBJECT} [owner:me]")],
        owned("bob", "tag [owner:me]", "open"),
    ),
    case(
        "owner-me-takes-over-from-owner",
        [*claimed(), msg(BOB, [SUPPORT], subject=f"Re: {SUBJECT} [owner:me]")],
        owned("bob", "tag [owner:me]"),
    ),
    case(
        "owner-me-from-shared-address-is-flagged",
        [opening(), msg(SUPPORT, [JANE], subject=f"Re: {SUBJECT} [owner:me]")],
        Expect(None, None, None, "waiting", True, "tag [owner:me]"),
    ),
    case(
        "owner-none-unowns-and-blocks-first-responder",
        [*claimed(), msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [owner:none]")],
        owned(None, "tag [owner:none]"),
    ),
    case(
        "tag-carried-by-re-is-not-repeated",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:bob]"),
            msg(BOB, [JANE], subject=f"Re: {SUBJECT} [owner:bob]"),
            msg(BOB, [CAROL], subject=f"Re: {SUBJECT} [owner:bob]"),
        ],
        handoff("carol", ADDRESSING),
    ),
    case(
        "tag-in-parent-is-not-a-command",
        [
            msg(JANE, [SUPPORT], subject=f"{SUBJECT} [owner:bob]"),
            msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [owner:bob]"),
        ],
        owned("alice", FIRST),
    ),
    case(
        "parent-unknown-every-tag-is-new",
        [
            msg(JANE, [SUPPORT], subject=f"{SUBJECT} [owner:bob]"),
            Unlinked(msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [owner:bob]")),
        ],
        handoff("bob", "tag [owner:bob]"),
    ),
    case(
        "normalized-tag-same-as-parent-is-not-new",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:bob]"),
            msg(BOB, [JANE], subject=f"Re: {SUBJECT} [@BOB]"),
            msg(BOB, [CAROL], subject=f"Re: {SUBJECT} [owner:bob@example.com]"),
        ],
        handoff("carol", ADDRESSING),
    ),
    case(
        "client-tag-is-ignored",
        [msg(JANE, [SUPPORT], subject=f"{SUBJECT} [owner:bob] [done]")],
        owned(None, "tag from outside the team", "open"),
    ),
    case(
        "client-task-reference-is-not-an-ignored-command",
        [opening(), msg(JANE, [SUPPORT], subject=f"Re: [#42] {SUBJECT}")],
        owned(None, None, "open"),
    ),
    case(
        "unknown-owner-flagged-owner-stays",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]")],
        Expect("alice", None, None, "waiting", True, "tag [owner:zed]"),
    ),
    case(
        "unknown-owner-flag-survives-plain-replies",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]"),
            msg(JANE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]"),
            msg(CAROL, [ALICE], subject=f"Re: {SUBJECT} [owner:zed]"),
        ],
        Expect("alice", None, None, "open", True, "tag [owner:zed]"),
    ),
    case(
        "unknown-owner-flag-cleared-by-next-valid-owner-change",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]"),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:bob]"),
        ],
        handoff("bob", "tag [owner:bob]"),
    ),
    case(
        "unknown-owner-flag-cleared-by-addressing-handoff",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]"),
            msg(ALICE, [BOB], subject=f"Re: {SUBJECT} [owner:zed]"),
        ],
        handoff("bob", ADDRESSING),
    ),
    case(
        "unknown-owner-then-valid-owner-in-one-subject",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed][owner:bob]")],
        handoff("bob", "tag [owner:bob]"),
    ),
    # -- stage tags and the responsibility map --------------------------------------------
    case(
        "stage-tag-hands-to-map-owner",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:engineering]")],
        handoff("bob", "tag [stage:engineering] (map)", stage="engineering"),
    ),
    case(
        "stage-tag-map-owner-is-sender-claims",
        [opening(), msg(BOB, [SUPPORT], subject=f"Re: {SUBJECT} [stage:Engineering]")],
        Expect("bob", None, "engineering", "open", False, "tag [stage:Engineering] (map)"),
    ),
    case(
        "stage-tag-map-owner-already-owns",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:intake]")],
        Expect("alice", None, "intake", "waiting", False, "tag [stage:intake]"),
    ),
    case(
        "stage-hole-flagged-owner-stays",
        [*claimed(client=HANS), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa]")],
        Expect("alice", None, "qa", "waiting", True, "map-hole", client="globex"),
        client="globex",
    ),
    case(
        "stage-hole-flag-cleared-by-next-owner-change",
        [
            *claimed(client=HANS),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa]"),
            msg(ALICE, [BOB], subject=f"Re: {SUBJECT} [stage:qa]"),
        ],
        Expect("bob", "bob", "qa", "waiting", False, ADDRESSING, client="globex"),
        client="globex",
    ),
    case(
        "stage-and-owner-tags-apply-left-to-right-without-map-move",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa][owner:bob]")],
        handoff("bob", "tag [owner:bob]", stage="qa"),
    ),
    case(
        "owner-then-stage-tag-keeps-named-owner",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:bob] [stage:qa]")],
        handoff("bob", "tag [stage:qa]", stage="qa"),
    ),
    case(
        "stage-tag-with-unknown-owner-beside-it-flags-and-keeps-owner",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa] [owner:zed]")],
        Expect("alice", None, "qa", "waiting", True, "tag [owner:zed]"),
    ),
    case(
        "unknown-stage-flagged-changes-nothing",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:legal]")],
        Expect("alice", None, None, "waiting", True, "tag [stage:legal]"),
    ),
    case(
        "unknown-stage-flag-cleared-by-valid-stage",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:legal]"),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:legal] [stage:qa]"),
        ],
        handoff("carol", "tag [stage:qa] (map)", stage="qa"),
    ),
    case(
        "stage-tag-on-task-without-client-is-a-hole",
        [opening("someone@else.org"), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa]")],
        Expect(None, None, "qa", "open", True, "map-hole", client=None),
        client=None,
    ),
    # -- client, due, close tags -----------------------------------------------------------
    case(
        "client-tag-sets-client",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [client:Globex]")],
        Expect("alice", None, None, "waiting", False, "tag [client:Globex]", client="globex"),
    ),
    case(
        "client-tag-then-stage-uses-new-clients-map",
        [
            *claimed(),
            msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [client:globex] [stage:qa]"),
        ],
        Expect("alice", None, "qa", "waiting", True, "map-hole", client="globex"),
    ),
    case(
        "unknown-client-tag-flagged-even-beside-first-response",
        [opening(), msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [client:nobody]")],
        Expect("alice", None, None, "waiting", True, FIRST),
    ),
    case(
        "due-tag-date",
        [*claimed(), msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [due:2026-12-01]")],
        Expect(
            "alice", None, None, "waiting", False, "tag [due:2026-12-01]", due=date(2026, 12, 1)
        ),
    ),
    case(
        "due-tag-business-time",
        [*claimed(), msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [due:3d]")],
        Expect("alice", None, None, "waiting", False, "tag [due:3d]", due=BusinessDuration(3, "d")),
    ),
    case(
        "done-tag-closes",
        [*claimed(), msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [done]")],
        Expect("alice", None, None, "closed", False, "tag [done]"),
    ),
    case(
        "closed-tag-closes",
        [*claimed(), msg(ALICE, [SUPPORT], subject=f"[Closed] Re: {SUBJECT}")],
        Expect("alice", None, None, "closed", False, "tag [Closed]"),
    ),
    case(
        "resolved-tag-closes",
        [*claimed(), msg(BOB, [SUPPORT], subject=f"Re: {SUBJECT} [resolved]")],
        Expect("alice", None, None, "closed", False, "tag [resolved]"),
    ),
    case(
        "team-reply-on-closed-task-keeps-it-closed",
        [
            *claimed(),
            msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(BOB, [JANE], subject=f"Re: {SUBJECT} [done]"),
        ],
        Expect("alice", None, None, "closed", False, "tag [done]"),
    ),
    case(
        "client-reply-reopens-with-same-owner",
        [
            *claimed(),
            msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT], subject=f"Re: {SUBJECT} [done]"),
        ],
        owned("alice", "client wrote on a closed task", "open"),
    ),
    case(
        "carried-done-does-not-close-again",
        [
            *claimed(),
            msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT], subject=f"Re: {SUBJECT} [done]"),
            msg(ALICE, [JANE], subject=f"Re: {SUBJECT} [done]"),
        ],
        owned("alice", "client wrote on a closed task", "waiting"),
    ),
    case(
        "client-reply-reopens-inactive-owners-task-unowned",
        [
            opening(),
            msg(ERIN, [JANE]),
            msg(ERIN, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT]),
        ],
        owned(None, "reopen: owner inactive or away", "open"),
    ),
    case(
        "client-reply-reopens-away-owners-task-unowned",
        [
            opening(),
            msg(FRANK, [JANE]),
            msg(FRANK, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT]),
        ],
        owned(None, "reopen: owner inactive or away", "open"),
        start=datetime(2026, 11, 17, 9, 0, tzinfo=UTC),
        gap=timedelta(days=1),
    ),
    case(
        "client-reply-reopens-away-owners-task-unowned-even-with-cover",
        [
            opening(),
            msg(DAVE, [JANE]),
            msg(DAVE, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT]),
        ],
        owned(None, "reopen: owner inactive or away", "open"),
        start=datetime(2026, 11, 17, 9, 0, tzinfo=UTC),
        gap=timedelta(days=1),
    ),
    case(
        "client-reply-reopens-before-owner-leaves-keeps-owner",
        [
            opening(),
            msg(FRANK, [JANE]),
            msg(FRANK, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [SUPPORT]),
        ],
        owned("frank", "client wrote on a closed task", "open"),
        start=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
        gap=timedelta(days=1),
    ),
    case(
        "reopened-unowned-task-goes-to-the-one-person-the-client-addresses",
        [
            opening(),
            msg(FRANK, [JANE]),
            msg(FRANK, [JANE], subject=f"Re: {SUBJECT} [done]"),
            msg(JANE, [BOB]),
        ],
        handoff("bob", CLIENT_TO_ONE, "open"),
        start=datetime(2026, 11, 17, 9, 0, tzinfo=UTC),
        gap=timedelta(days=1),
    ),
    # -- CLI commands ----------------------------------------------------------------------
    case(
        "cli-assign-to-other-is-pending",
        [opening(), Cmd("carol", "assign", "bob")],
        handoff("bob", "command assign", "open"),
    ),
    case(
        "cli-assign-to-self-claims",
        [opening(), Cmd("bob", "assign", "bob")],
        owned("bob", "command assign", "open"),
    ),
    case(
        "cli-assign-by-pending-target-acknowledges",
        [opening(), Cmd("carol", "assign", "bob"), Cmd("bob", "assign", "bob")],
        owned("bob", "command assign", "open"),
    ),
    case("cli-unassign", [*claimed(), Cmd("carol", "unassign")], owned(None, "command unassign")),
    case(
        "cli-close",
        [*claimed(), Cmd("alice", "close")],
        Expect("alice", None, None, "closed", False, "command close"),
    ),
    case(
        "cli-reopen-keeps-available-owner",
        [*claimed(), Cmd("alice", "close"), Cmd("carol", "reopen")],
        owned("alice", "command reopen", "open"),
    ),
    case(
        "cli-reopen-unowns-inactive-owner",
        [opening(), msg(ERIN, [JANE]), Cmd("carol", "close"), Cmd("carol", "reopen")],
        owned(None, "reopen: owner inactive or away", "open"),
    ),
    case(
        "cli-stage-hands-to-map-owner",
        [*claimed(), Cmd("alice", "stage", "engineering")],
        handoff("bob", "command stage (map)", stage="engineering"),
    ),
    case(
        "cli-stage-by-map-owner-claims",
        [opening(), Cmd("carol", "stage", "qa")],
        Expect("carol", None, "qa", "open", False, "command stage (map)"),
    ),
    case(
        "cli-stage-hole-flagged-owner-stays",
        [*claimed(client=HANS), Cmd("carol", "stage", "qa")],
        Expect("alice", None, "qa", "waiting", True, "map-hole", client="globex"),
        client="globex",
    ),
    case(
        "cli-client-changes-client",
        [*claimed(), Cmd("carol", "client", "globex")],
        Expect("alice", None, None, "waiting", False, "command client", client="globex"),
    ),
    case(
        "cli-due-sets-deadline",
        [*claimed(), Cmd("alice", "due", "2026-12-01")],
        Expect("alice", None, None, "waiting", False, "command due", due=date(2026, 12, 1)),
    ),
    case(
        "cli-note-is-recorded",
        [*claimed(), Cmd("alice", "close", note="fixed upstream")],
        Expect("alice", None, None, "closed", False, "command close"),
    ),
]


@pytest.mark.parametrize(("items", "kw", "expect"), CASES)
def test_timeline(items: list[Item], kw: dict[str, object], expect: Expect) -> None:
    o = run(*items, **kw)  # type: ignore[arg-type]
    got = Expect(
        o.owner,
        o.pending.to if o.pending is not None else None,
        o.stage,
        o.status,
        o.flag is not None,
        o.events[-1].rule if o.events else None,
        o.client,
        o.due[1] if o.due is not None else None,
    )
    assert got == expect
    assert len(CASES) >= 45


# -- the evidence: every change as an event with its rule (SPEC 6.3) ---------------------------


def trail(o: Ownership) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.kind, e.rule, e.owner_from, e.owner_to) for e in o.events]


def test_events_explain_first_responder_handoff_and_acknowledgement() -> None:
    o = run(*claimed(), msg(ALICE, [BOB]), msg(BOB, [JANE]))
    assert trail(o) == [
        ("owner", FIRST, None, "alice"),
        ("handoff", ADDRESSING, "alice", "bob"),
        ("ack", ACK, "bob", "bob"),
    ]
    assert [e.message_id for e in o.events] == ["<1@test>", "<2@test>", "<3@test>"]
    handed = o.handoffs[0][0]
    assert (handed.from_, handed.to, handed.at) == ("alice", "bob", T0 + timedelta(minutes=20))
    assert o.handoffs[0][1] == T0 + timedelta(minutes=30)
    assert o.pending is None


def test_events_record_an_unacknowledged_handoff_superseded_by_a_manager() -> None:
    o = run(*claimed(), msg(ALICE, [BOB]), msg(CAROL, [DAVE]))
    assert trail(o)[1:] == [
        ("handoff", ADDRESSING, "alice", "bob"),
        ("handoff", ADDRESSING, "bob", "dave"),
    ]
    assert [(h.to, acked) for h, acked in o.handoffs] == [("bob", None)]
    assert o.pending is not None and (o.pending.from_, o.pending.to) == ("bob", "dave")


def test_events_say_a_clients_tag_was_ignored() -> None:
    o = run(msg(JANE, [SUPPORT], subject=f"{SUBJECT} [owner:bob] [done]"))
    assert trail(o) == [("ignored", "tag from outside the team", None, None)]
    assert "[owner:bob] [done]" in o.events[0].detail
    assert JANE in o.events[0].detail


def test_events_two_tags_left_to_right_never_touch_the_map_owner() -> None:
    o = run(*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [stage:qa][owner:bob]"))
    assert trail(o) == [
        ("owner", FIRST, None, "alice"),
        ("stage", "tag [stage:qa]", "alice", "alice"),
        ("handoff", "tag [owner:bob]", "alice", "bob"),
    ]


def test_events_explain_reopening_an_inactive_owners_task() -> None:
    o = run(
        opening(),
        msg(ERIN, [JANE]),
        msg(ERIN, [JANE], subject=f"Re: {SUBJECT} [done]"),
        msg(JANE, [SUPPORT]),
    )
    assert trail(o) == [
        ("owner", FIRST, None, "erin"),
        ("close", "tag [done]", "erin", "erin"),
        ("reopen", "client wrote on a closed task", "erin", "erin"),
        ("owner", "reopen: owner inactive or away", "erin", None),
    ]
    assert o.closed_at is None


def test_events_of_cli_commands_name_the_actor() -> None:
    o = run(
        opening(),
        Cmd("carol", "assign", "bob"),
        Cmd("bob", "assign", "bob"),
        Cmd("bob", "close", note="fixed in 2.1"),
    )
    assert trail(o) == [
        ("handoff", "command assign", None, "bob"),
        ("ack", "command assign", "bob", "bob"),
        ("close", "command close", "bob", "bob"),
        ("note", "command close", "bob", "bob"),
    ]
    assert [e.actor for e in o.events] == ["carol", "bob", "bob", "bob"]
    assert o.events[-1].detail == "fixed in 2.1"
    assert o.closed_at == T0 + timedelta(minutes=30)


def test_bad_tag_flag_names_the_tag() -> None:
    o = run(*claimed(), msg(ALICE, [SUPPORT], subject=f"Re: {SUBJECT} [owner:zed]"))
    assert o.flag is not None and "[owner:zed]" in o.flag
    assert trail(o)[-1] == ("flag", "tag [owner:zed]", "alice", "alice")
    assert o.events[-1].message_id == "<2@test>"


def test_message_goes_before_a_command_at_the_same_moment() -> None:
    steps, _ = timeline(*claimed())
    late = Command(steps[-1].at, "carol", "unassign")
    o = replay(steps, [late], CONFIG, "acme")
    assert trail(o) == [
        ("owner", FIRST, None, "alice"),
        ("owner", "command unassign", "alice", None),
    ]


# -- orphans (SPEC 6.2): inactive, away without cover, unowned, flagged -------------------------

BEFORE_AWAY, DURING_AWAY = date(2026, 11, 10), AWAY_DAY.date()


@pytest.mark.parametrize(
    ("owner_address", "day", "reason"),
    [
        pytest.param(ALICE, DURING_AWAY, None, id="active-owner-not-orphaned"),
        pytest.param(ERIN, BEFORE_AWAY, "owner erin is inactive", id="inactive-owner"),
        pytest.param(FRANK, DURING_AWAY, "owner frank is away with no cover", id="away-no-cover"),
        pytest.param(FRANK, BEFORE_AWAY, None, id="before-away-not-orphaned"),
        pytest.param(DAVE, DURING_AWAY, None, id="away-with-cover-not-orphaned"),
        pytest.param(SUPPORT, DURING_AWAY, "unowned", id="unowned"),
    ],
)
def test_orphan_reason(owner_address: str, day: date, reason: str | None) -> None:
    o = run(*claimed(owner_address))
    assert orphan_reason(o.owner, o.flag, CONFIG, day) == reason


def test_orphan_reason_is_the_flag_while_flagged() -> None:
    o = run(
        *claimed(client=HANS), msg(ALICE, [SUPPORT], subject="Re: x [stage:qa]"), client="globex"
    )
    reason = orphan_reason(o.owner, o.flag, CONFIG, BEFORE_AWAY)
    assert o.owner == "alice" and reason is not None and "hole" in reason


# -- properties over random timelines ---------------------------------------------------------

PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")
ADDRESSES = (ALICE, BOB, CAROL, DAVE, ERIN, FRANK, SUPPORT, OPS, JANE, HANS)
TAGS = (
    "[owner:alice]", "[@bob]", "[owner:me]", "[owner:none]", "[owner:zed]", "[stage:qa]",
    "[stage:engineering]", "[stage:legal]", "[client:globex]", "[client:nobody]", "[done]",
    "[ack]", "[due:3d]", "[#42]",
)  # fmt: skip
ARGS: dict[Verb, tuple[str | None, ...]] = {
    "assign": PEOPLE,
    "unassign": (None,),
    "close": (None,),
    "reopen": (None,),
    "stage": ("intake", "engineering", "qa", "delivery"),
    "client": ("acme", "globex"),
    "due": ("2026-12-01", "3d"),
}


@st.composite
def messages(draw: st.DrawFn) -> Item:
    addresses = st.sampled_from(ADDRESSES)
    tags = draw(st.lists(st.sampled_from(TAGS), max_size=3))
    m = msg(
        draw(addresses),
        draw(st.lists(addresses, max_size=3)),
        draw(st.lists(addresses, max_size=2)),
        " ".join(("Re:", SUBJECT, *tags)),
        auto=draw(st.integers(0, 4)) == 0,
    )
    return Unlinked(m) if draw(st.integers(0, 5)) == 0 else m


@st.composite
def commands(draw: st.DrawFn) -> Item:
    verb = draw(st.sampled_from(tuple(ARGS)))
    note = draw(st.sampled_from((None, None, "a note")))
    return Cmd(draw(st.sampled_from(PEOPLE)), verb, draw(st.sampled_from(ARGS[verb])), note)


timelines = st.lists(st.one_of(messages(), messages(), commands()), max_size=12)
clients = st.sampled_from(("acme", "globex", None))
few = settings(max_examples=120, deadline=None)


@few
@given(timelines, clients)
def test_replay_is_deterministic_and_order_of_input_does_not_matter(
    items: list[Item], client: str | None
) -> None:
    steps, cmds = timeline(*items)
    o = replay(steps, cmds, CONFIG, client)
    assert replay(steps, cmds, CONFIG, client) == o
    assert replay(steps[::-1], cmds[::-1], CONFIG, client) == o


@few
@given(timelines, clients)
def test_one_owner_at_a_time_and_pending_is_the_owner(
    items: list[Item], client: str | None
) -> None:
    o = run(*items, client=client)
    assert o.owner is None or o.owner in PEOPLE
    assert o.pending is None or o.pending.to == o.owner
    for handed, acked in o.handoffs:
        assert acked is None or acked >= handed.at
    assert (o.status == "closed") == (o.closed_at is not None)


@few
@given(timelines, clients)
def test_owner_changes_name_a_rule_and_chain(items: list[Item], client: str | None) -> None:
    steps, cmds = timeline(*items)
    o = replay(steps, cmds, CONFIG, client)
    by_id = {s.message.message_id: s.message for s in steps}
    kinds = {s.message.message_id: s.kind for s in steps}
    from_client = {CLIENT_TO_ONE, "reopen: owner inactive or away"}
    owner: str | None = None
    for e in o.events:
        assert e.rule
        assert kinds.get(e.message_id or "") != "auto"  # auto mail never changes anything
        if kinds.get(e.message_id or "") == "client":  # a client's tags never command
            assert not e.rule.startswith("tag [")
            if e.kind in ("owner", "handoff"):
                assert e.rule in from_client
        assert e.owner_from == owner
        if e.kind in ("owner", "handoff"):
            assert e.owner_to != e.owner_from
            owner = e.owner_to
        else:
            assert e.owner_to == owner
        if e.rule == ADDRESSING:  # only To hands off, never Cc
            assert e.message_id is not None
            to = {a.email for a in by_id[e.message_id].to}
            assert e.owner_to is not None and f"{e.owner_to}@example.com" in to
    assert owner == o.owner


@few
@given(timelines, clients)
def test_replaying_a_prefix_gives_a_prefix_of_the_events(
    items: list[Item], client: str | None
) -> None:
    whole = run(*items, client=client).events
    for k in range(len(items)):
        part = run(*items[:k], client=client).events
        assert whole[: len(part)] == part


@few
@given(timelines, clients)
def test_auto_messages_change_nothing(items: list[Item], client: str | None) -> None:
    steps, cmds = timeline(*items)
    human = [s for s in steps if s.kind != "auto"]
    assert replay(human, cmds, CONFIG, client) == replay(steps, cmds, CONFIG, client)
