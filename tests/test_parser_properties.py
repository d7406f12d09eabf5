"""Mail is hostile input (SPEC 11): whatever the bytes, parse_message returns a Message or
raises ParseError, and the Message keeps its invariants. Hypothesis, ~200 examples each."""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime
from pathlib import Path
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildaemon.errors import ParseError
from maildaemon.model import Message
from maildaemon.parsers import HEADER_FIELDS, parse_message
from maildaemon.parsers.elide import elide_base64

DATA = Path(__file__).resolve().parent / "data" / "parsing"
FIXTURES = [path.read_bytes() for path in sorted(DATA.glob("*.eml"))]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CAP = 2048

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _utf8_clean(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def check(raw: bytes) -> Message | None:
    """Parse ``raw``; a ParseError is fine, anything else fails the test. Check invariants."""
    try:
        m = parse_message(raw, received_at=NOW, text_cap=CAP)
    except ParseError as e:
        assert str(e)  # a reason is given
        return None
    assert isinstance(m, Message)
    assert m.size == len(raw)
    assert m.date.tzinfo is not None and m.date.utcoffset().total_seconds() == 0
    if m.date_is_fallback:
        assert m.date == NOW
    else:
        assert m.date.year >= 1980 and m.date <= NOW.replace(day=28)
    assert len(m.text.encode("utf-8")) <= CAP
    assert len(m.reply_text.encode("utf-8")) <= CAP
    assert m.message_id.startswith("<") and m.message_id.endswith(">") and "@" in m.message_id
    assert m.message_id not in m.in_reply_to and m.message_id not in m.references
    assert len(set(m.references)) == len(m.references) <= 200
    assert len(m.defects) <= 20
    addresses = [*m.to, *m.cc, *m.reply_to, *([m.from_] if m.from_ else [])]
    for address in addresses:
        assert "@" in address.email and address.email == address.email.lower()
    strings = [m.subject, m.base_subject, m.normalized_subject, m.text, m.reply_text]
    strings += [a.name for a in addresses] + [a.filename for a in m.attachments]
    strings += list(m.defects) + list(m.references) + list(m.in_reply_to)
    strings += [a.content_type for a in m.attachments] + [m.message_id]
    strings += [s for s in (m.list_id, m.precedence, m.auto_submitted, m.thread_index) if s]
    assert all(_utf8_clean(s) for s in strings), "text that SQLite and UTF-8 sinks refuse"
    assert all(a.size >= 0 for a in m.attachments)
    return m


@PROPERTY_SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_give_a_message_or_parse_error(raw):
    check(raw)


_names = st.sampled_from([*HEADER_FIELDS, "Received", "X-Junk", "Content-Disposition"])
_values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "<a@b>",
            "a@b, <c@d>",
            "=?utf-8?B?w7w=?=",
            "=?x-bogus?Q?=FF=FE?=",
            "=?utf-8?B?!!!?=",
            "multipart/mixed; boundary=b",
            'multipart/alternative; boundary="b"',
            "text/html; charset=utf-7",
            "text/plain; charset=undefined",
            "text/plain; charset=base64",
            "base64",
            "quoted-printable",
            "Thu, 32 Foo 0102",
            "Mon, 01 Jan 0001 00:00:00 -2359",
            "Fri, 31 Dec 9999 23:59:59 +2359",
            '"unterminated <a@b',
            "group: a@b, c@d;",
            "(((((((((",
            "AQID====",
        ]
    ),
)
_bodies = st.one_of(
    st.binary(max_size=1500),
    st.sampled_from(
        [
            b"--b\nContent-Type: text/plain\n\nhi\n--b--\n",
            b"--b\n\n--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n",
            b"--b\nContent-Transfer-Encoding: base64\n\n====\n",
            b"<html><script>x<p>unclosed &#xFFFFFFFF; &bogus; <![CDATA[ x",
            b"<!--",
            b"<![if x]>",
            b"\xff\xfe\x00h\x00i",
        ]
    ),
)


@st.composite
def header_messages(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(_names, _values), min_size=1, max_size=12))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    head = "".join(f"{name}: {value}{sep}" for name, value in fields)
    return head.encode("utf-8", "surrogatepass") + sep.encode() + draw(_bodies)


@PROPERTY_SETTINGS
@given(header_messages())
def test_generated_header_soup_gives_a_message_or_parse_error(raw):
    check(raw)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(
                ["flip", "insert", "delete", "truncate", "duplicate", "huge", "crlf", "nul"]
            )
        )
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 200))]
        elif kind == "truncate":
            del raw[at:]
        elif kind == "duplicate":
            line_end = raw.find(b"\n", at)
            line_start = raw.rfind(b"\n", 0, at) + 1
            if line_end > line_start:
                raw[line_start:line_start] = bytes(raw[line_start : line_end + 1]) * draw(
                    st.integers(1, 50)
                )
        elif kind == "huge":
            name = draw(st.sampled_from([b"To", b"References", b"Subject", b"Content-Type"]))
            unit = draw(st.sampled_from([b"<x@y> ", b"a@b, ", b";", b"=?utf-8?Q?x?= ", b"[x] "]))
            raw[0:0] = name + b": " + unit * draw(st.integers(1000, 20000)) + b"\n"
        elif kind == "crlf":
            raw = bytearray(bytes(raw).replace(b"\n", b"\r\n"))
        elif kind == "nul":
            raw[at:at] = b"\x00"
    return bytes(raw)


@PROPERTY_SETTINGS
@given(mutated_fixtures())
def test_mutated_real_messages_give_a_message_or_parse_error(raw):
    check(raw)


def test_every_fixture_passes_the_invariants():
    for raw in FIXTURES:
        assert check(raw) is not None


# --- eliding long base64 runs (elide.py) changes nothing but memory -------------------------

ELIDE_MIN = 256  # instead of 64 KB, so that small generated messages have runs to elide


def _base64_lines(data: bytes, width: int, nl: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + width] + nl for i in range(0, len(encoded), width))


@st.composite
def messages_with_base64(draw: st.DrawFn) -> bytes:
    nl = draw(st.sampled_from([b"\n", b"\r\n"]))
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        ctype = draw(
            st.sampled_from(
                [b"text/plain", b"text/html", b"application/pdf", b"image/png", b"pdf", b""]
            )
        )
        data = draw(st.binary(max_size=3000)) + b"x" * draw(st.integers(0, 3000))
        width = draw(st.sampled_from([60, 76, 100000]))
        head = b"Content-Type: " + ctype + nl if ctype else b""
        if draw(st.booleans()):
            head += b"Content-Disposition: attachment; filename=f" + nl
        cte = draw(st.sampled_from([b"base64", b"7bit"]))
        body = _base64_lines(data, width, nl)
        if draw(st.booleans()):  # a list footer after a blank line
            body += nl + b"-- " + nl + b"footer" + nl
        parts.append(head + b"Content-Transfer-Encoding: " + cte + nl + nl + body)
    top = draw(st.sampled_from([b"multipart/mixed; boundary=b", b"text/plain"]))
    head = b"From: a@example.com" + nl + b"Content-Type: " + top + nl + nl
    if top.startswith(b"text"):
        return head + parts[0].split(nl + nl, 1)[1]
    return head + b"".join(b"--b" + nl + p for p in parts) + b"--b--" + nl


@PROPERTY_SETTINGS
@given(messages_with_base64(), st.sampled_from([64, 256, 2048]))
def test_eliding_base64_runs_gives_the_unelided_message(raw, text_cap):
    from maildaemon.parsers import message as message_module

    def parse(elide: object) -> Message:
        with patch.object(message_module, "elide_base64", elide):
            return parse_message(raw, received_at=NOW, text_cap=text_cap)

    elided = parse(functools.partial(elide_base64, min_bytes=ELIDE_MIN))
    assert elided == parse(lambda data, start, keep: data[start:])
    assert "maildaemon elided" not in elided.text


# -- the header-block shortcut of `message._parse` is the stdlib parse -------------------------

_LINES = st.sampled_from(
    [
        "Subject: hello",
        "From: a@example.com",
        "From a@example.com Tue Nov 24 10:00:00 2026",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: multipart/mixed; boundary=xx",
        "Content-Type: message/rfc822",
        "X-Odd:value",
        "\tcontinued",
        " folded",
        "no colon here",
        ": empty name",
        "",
        "--xx",
        "body text \u00e9",
        "From the body",
    ]
)
_ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(_LINES, _ENDS), max_size=14), st.booleans())
def test_the_header_shortcut_parses_as_the_stdlib_does(lines, last_end):
    """`_parse` parses the header block alone when the body needs no MIME walk; whatever
    the line endings, "From " lines and odd header lines, the result must be what
    ``BytesParser(policy=compat32)`` gives: the same headers, payload, defects."""
    from email.parser import BytesParser
    from email.policy import compat32

    from maildaemon.parsers.message import _parse

    text = "".join(line + end for line, end in lines)
    if not last_end and text:
        text = text.rstrip("\r\n")
    data = text.encode("utf-8")
    expected = BytesParser(policy=compat32).parsebytes(data)
    got = _parse(data, [])
    assert got.items() == expected.items()
    assert got.get_unixfrom() == expected.get_unixfrom()
    assert [type(d) for d in got.defects] == [type(d) for d in expected.defects]
    if not expected.is_multipart():
        assert got.get_payload() == expected.get_payload()
    else:
        assert _flat(got) == _flat(expected)


def _flat(msg: object) -> str:
    """A message written out, or the error writing it gives (8-bit text in a multipart)."""
    try:
        return msg.as_string()  # type: ignore[attr-defined, no-any-return]
    except Exception as e:
        return repr(e)
