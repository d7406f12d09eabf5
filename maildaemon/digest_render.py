"""A digest as people read it (SPEC 9): plain text, HTML, and the multipart/alternative
message that carries both.

Pure: a `Digest` in, strings and bytes out. Text from mail was already cut to one line by
`digest.clean`; the HTML template autoescapes every value on top of that, and the only header
built from mail text (an alert's subject) goes through `clean` too, so nothing from mail can
add a header or markup.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from functools import cache
from typing import Any

import jinja2

from maildaemon.digest import Digest, Section, clean, day_label

UNFOLDED = SMTP.clone(max_line_length=998)
RED, AMBER, GREY, BLUE = "#bf2600", "#b65c02", "#42526e", "#0747a6"
COLORS = {
    "overdue": RED,
    "handoffs": AMBER,
    "orphaned": RED,
    "unowned": AMBER,
    "at_risk": AMBER,
    "inboxes": RED,
    "deliveries": RED,
    "holes": AMBER,
    "today": BLUE,
    "waiting": GREY,
}


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    code: bool = False
    style: str = ""


def _task(i: Mapping[str, Any]) -> Cell:
    return Cell(f"#{i['id']}", style="white-space:nowrap;font-weight:600;")


def _subject(i: Mapping[str, Any]) -> str:
    note = f" (covering for {i['covering_for']})" if i.get("covering_for") else ""
    return f"{i['subject']}{note}"


def _due(i: Mapping[str, Any]) -> Cell:
    style = "white-space:nowrap;" + (f"color:{RED};font-weight:600;" if i.get("overdue") else "")
    return Cell(i["due"] or "-", style=style)


def _act(i: Mapping[str, Any]) -> Cell:
    return Cell(i["command"], code=True)


def _text(value: Any) -> Cell:
    return Cell("-" if value is None or value == "" else str(value))


# Per section: the column headers and the cells of one item, shared by text and HTML.
PERSONAL = (
    ("Task", "Client", "Subject", "Due", "Age", "Last from"),
    lambda i: (
        _task(i),
        _text(i["client"]),
        Cell(_subject(i) + (f" — from {i['handoff_from']}" if i.get("handoff_from") else "")),
        _due(i),
        _text(i["age"]),
        _text(i["last_from"]),
    ),
)
TEAM: dict[str, tuple[tuple[str, ...], Any]] = {
    "unowned": (
        ("Task", "Client", "Subject", "Age", "Due", "Act"),
        lambda i: (
            _task(i),
            _text(i["client"]),
            Cell(i["subject"]),
            _text(i["age"]),
            _due(i),
            _act(i),
        ),
    ),
    "overdue": (
        ("Client", "Task", "Owner", "Subject", "Due", "Act"),
        lambda i: (
            _text(i["client"] or "(no client)"),
            _task(i),
            _text(i["owner"] or "(unowned)"),
            Cell(i["subject"]),
            _due(i),
            _act(i),
        ),
    ),
    "handoffs": (
        ("Task", "Client", "Handoff", "Subject", "Ack", "Act"),
        lambda i: (
            _task(i),
            _text(i["client"]),
            Cell(f"{i['handoff_from'] or 'nobody'} → {i['handoff_to']}"),
            Cell(i["subject"]),
            Cell(i["handoff_due"], style=f"white-space:nowrap;color:{RED};"),
            _act(i),
        ),
    ),
    "orphaned": (
        ("Task", "Client", "Owner", "Reason", "Subject", "Act"),
        lambda i: (
            _task(i),
            _text(i["client"]),
            _text(i["owner"] or "(unowned)"),
            Cell(i["reason"]),
            Cell(i["subject"]),
            _act(i),
        ),
    ),
    "at_risk": (
        ("Task", "Client", "Owner", "Subject", "Due", "Act"),
        lambda i: (
            _task(i),
            _text(i["client"]),
            _text(i["owner"] or "(unowned)"),
            Cell(i["subject"]),
            _due(i),
            _act(i),
        ),
    ),
    "inboxes": (
        ("Inbox", "Problem", "Last good sync", "Act"),
        lambda i: (_text(i["inbox"]), Cell(i["reason"]), _text(i["last_sync_at"]), _act(i)),
    ),
    "deliveries": (
        ("Delivery", "Attempts", "Error", "Act"),
        lambda i: (
            Cell(f"{i['kind']} to {i['recipient']} ({i['key']})"),
            _text(i["attempts"]),
            Cell(f"{i['error']} ({i['at']})"),
            _act(i),
        ),
    ),
    "holes": (
        ("Client", "Stage", "Why", "Open tasks", "Act"),
        lambda i: (
            _text(i["client"]),
            _text(i["stage"]),
            Cell(i["reason"]),
            _text(i["open_tasks"]),
            _act(i),
        ),
    ),
}


def _columns(d: Digest, s: Section) -> tuple[tuple[str, ...], Any]:
    return PERSONAL if d.kind == "personal" else TEAM[s.key]


def intro(d: Digest) -> str:
    if d.kind == "personal":
        return (
            f"Good morning, {d.person}. Your open work: overdue first, then what is due "
            "today, handoffs waiting for you to reply, and tasks waiting on the client."
            if not d.empty
            else f"Good morning, {d.person}. Nothing is overdue or due today."
        )
    return (
        "What needs a manager: unowned, overdue and orphaned work, handoffs nobody picked "
        "up, deadlines in the next 4 business hours, and anything maildaemon itself failed at."
    )


# -- plain text -------------------------------------------------------------------------------

HEAD = ("Task", "Client", "Subject")  # a task's first line; the rest goes on the second
UNLABELLED = ("Due", "Reason", "Handoff", "Problem", "Why", "Delivery", "Error")


def _text_item(heads: Sequence[str], row: Sequence[Cell]) -> list[str]:
    """One item as text: ``#8  acme  Subject``, then its details, then ``→ command``."""
    pairs = [(h, c.text) for h, c in zip(heads, row, strict=True) if not c.code and c.text != "-"]
    acts = [f"      → {c.text}" for c in row if c.code]
    if "Task" not in heads:
        fields = [t if h in UNLABELLED else f"{h.lower()} {t}" for h, t in pairs]
        return ["  " + " · ".join(fields), *acts]
    head = "  ".join(t for h, t in pairs if h in HEAD)
    rest = [t if h in UNLABELLED else f"{h.lower()} {t}" for h, t in pairs if h not in HEAD]
    return [f"  {head}", *(["      " + " · ".join(rest)] if rest else []), *acts]


def text(d: Digest, sent: datetime) -> str:
    """The text/plain part: one block per non-empty section, each item on one line with its
    details and, for managers, the command that acts on it on the next."""
    out = [d.subject, "=" * min(len(d.subject), 72), "", textwrap.fill(intro(d), 72), ""]
    for s in d.sections:
        if not s.total:
            continue
        heads, cells = _columns(d, s)
        out.append(f"{s.title.upper()} ({s.total})")
        for item in s.items:
            out.extend(_text_item(heads, cells(item)))
        if s.more:
            out.append(f"  … {s.total - len(s.items)} more: {s.more}")
        out.append("")
    clear = [s.title for s in d.sections if not s.total]
    if d.kind == "team" and clear:
        out += [f"Nothing to report: {', '.join(clear)}.", ""]
    if d.load:
        out.append("OPEN TASKS PER OWNER")
        for r in d.load:
            note = f"  ({r['note']})" if r["note"] else ""
            out.append(
                f"  {r['owner']:<16} {r['open']:>4} open {r['waiting']:>4} waiting "
                f"{r['overdue']:>4} overdue{note}"
            )
        out.append("")
    if d.board is not None:
        out.append("RESPONSIBILITY MAP  ([n] open tasks; HOLE: work there is orphaned)")
        for row in d.board["clients"]:
            cells = []
            for stage in d.board["stages"]:
                c = row["cells"][stage]
                who = c["owner"] or "-"
                if c["hole"]:
                    who += " HOLE"
                elif c["covered_by"]:
                    who += f"→{c['covered_by']}"
                cells.append(f"{stage}={who}" + (f"[{c['open_tasks']}]" if c["open_tasks"] else ""))
            out.append(f"  {row['client']}: " + "  ".join(cells))
        out.append("")
    out.append(f"Sent by maildaemon on {sent:%Y-%m-%d %H:%M %Z}. {footer(d)}")
    out.append("`maildaemon show ID` explains any task.")
    return "\n".join(out) + "\n"


# -- HTML -------------------------------------------------------------------------------------


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("maildaemon", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def html(d: Digest, sent: datetime) -> str:
    sections = []
    for s in d.sections:
        if not s.total:
            continue
        heads, cells = _columns(d, s)
        sections.append(
            {
                "title": s.title,
                "total": s.total,
                "more": s.more,
                "headers": heads,
                "rows": [cells(i) for i in s.items],
                "color": COLORS.get(s.key, GREY),
            }
        )
    return (
        _env()
        .get_template("digest.html.j2")
        .render(
            subject=d.subject,
            heading="your digest" if d.kind == "personal" else "team digest",
            day=day_label(d.day),
            intro=intro(d),
            sections=sections,
            clear=[s.title for s in d.sections if not s.total] if d.kind == "team" else [],
            load=d.load,
            board=d.board,
            sent=f"{sent:%Y-%m-%d %H:%M %Z}",
            footer=footer(d),
        )
    )


def footer(d: Digest) -> str:
    if d.kind == "personal":
        return "Work on these in your mail client as always: a reply is what counts."
    return "Every line shows the command that acts on it."


# -- the message ------------------------------------------------------------------------------


def message(
    *,
    subject: str,
    sender: str,
    to: Sequence[tuple[str, str]],
    message_id: str,
    date: datetime,
    body_text: str,
    body_html: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """An RFC 5322 message (CRLF) with the headers of SPEC 9: Date, Message-ID, From, To,
    `Auto-Submitted: auto-generated` (it never starts a task, not even in its own inbox),
    `Precedence: bulk`, and `X-Auto-Response-Suppress` so Exchange sends no out-of-office
    replies. Every header value is one line (`clean`)."""
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = clean(subject, 200)
    msg["From"] = sender
    msg["To"] = ", ".join(formataddr((clean(name, 80), addr)) for name, addr in to)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "bulk"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in (extra_headers or {}).items():
        msg[name] = clean(value, 200)
    msg.set_content(body_text, cte="quoted-printable")
    if body_html is not None:
        msg.add_alternative(body_html, subtype="html", cte="quoted-printable")
    # Headers unfolded (each is one cleaned line of at most ~200 characters, well within
    # 998): CPython's folder doubles the space before a folded encoded word ("holes  —").
    # The parts were encoded above with 76-character lines and stay so.
    return msg.as_bytes(policy=UNFOLDED)
