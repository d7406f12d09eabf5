"""BODYSTRUCTURE -> the parts IMAP fetches, and the pieces -> bytes for parse_message: pure
functions, tested with the structures imapclient returns (tests/test_imap.py checks the
same against a real Dovecot)."""

from __future__ import annotations

from datetime import UTC, datetime

from maildaemon.model import Attachment
from maildaemon.parsers import parse_message
from maildaemon.parsers.bodystructure import (
    assemble,
    attachment_of,
    cut_partial,
    parts_of,
    text_limit,
)

PLAIN = (b"text", b"plain", (b"charset", b"utf-8"), None, None, b"quoted-printable", 120, 3)
PLAIN += (None, None, None, None)
HTML = (b"text", b"html", (b"charset", b"utf-8"), None, None, b"base64", 900, 12)
HTML += (None, None, None, None)
PDF = (b"application", b"pdf", (b"name", b"r.pdf"), None, None, b"base64", 1040, None)
PDF += ((b"attachment", (b"filename", b"report =?utf-8?q?Q3?=.pdf")), None, None)
INLINE_CSV = (b"text", b"csv", (b"charset", b"us-ascii"), None, None, b"7bit", 52, 4)
INLINE_CSV += (None, (b"attachment", (b"filename*", b"utf-8''d%C3%A9tail.csv")), None, None)
FORWARD = (b"message", b"rfc822", (), None, None, b"7bit", 400, (), PLAIN, 10, None, None)
ALTERNATIVE = ([PLAIN, HTML], b"alternative", (b"boundary", b"b2"), None, None, None)
MIXED = ([ALTERNATIVE, PDF, INLINE_CSV, FORWARD], b"mixed", (b"boundary", b"b1"), None, None)


def test_text_parts_and_attachments_are_told_apart_as_body_py_does():
    parts = parts_of(MIXED)
    assert [(p.section, p.ctype, p.text) for p in parts] == [
        ("1.1", "text/plain", True),
        ("1.2", "text/html", True),
        ("2", "application/pdf", False),
        ("3", "text/csv", False),
        ("4", "message/rfc822", False),  # a forwarded message is an attachment, not read
    ]
    assert parts[2].filename == "report Q3.pdf"  # encoded words decoded
    assert parts[3].filename == "détail.csv"  # RFC 2231 decoded
    assert not any(p.top for p in parts)


def test_a_single_part_message_is_its_own_top_level_text():
    (part,) = parts_of(PLAIN)
    assert (part.section, part.top, part.text, part.encoding) == (
        "1",
        True,
        True,
        "quoted-printable",
    )


def test_a_multipart_without_boundaries_is_read_as_text_like_body_py_does():
    empty = (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 0, 0)
    nested = ([empty], b"alternative", (b"boundary", b"inner"), None, None, None)
    assert [(p.section, p.text) for p in parts_of(([nested], b"mixed", ()))] == [("1", True)]
    assert [(p.section, p.top) for p in parts_of(nested)] == [("TEXT", True)]


def test_attachment_sizes_are_as_decoded_on_disk():
    pdf, csv, forward = parts_of(MIXED)[2:]
    assert attachment_of(pdf) == Attachment("report Q3.pdf", "application/pdf", 760)
    assert attachment_of(csv).size == 48  # four CRLF line ends became LF
    assert attachment_of(forward).size == 390


def test_text_limits_follow_the_transfer_encoding_and_never_pass_body_py_budget():
    plain, html = parts_of(ALTERNATIVE)
    assert text_limit(plain, 16384) == int(16384 * 1.3) + 256
    assert text_limit(plain, 16384, full=True) == 12 * 16384
    assert text_limit(html, 16384) == int(16384 * 4 * 1.4) + 256
    assert text_limit(html, 16384, full=True) == 32 * 16384
    assert text_limit(plain, 10) == 12 * 10  # body.py reads no more than this


def test_a_partial_payload_ends_at_a_line_end():
    assert cut_partial(b"abcd\nefgh\nij", 12) == b"abcd\nefgh\n"
    assert cut_partial(b"abcd\nefgh\nij", 20) == b"abcd\nefgh\nij"  # it was all of it


def test_assembled_pieces_parse_like_the_whole_message():
    headers = (
        b"Message-ID: <a@example.org>\r\nSubject: Hello\r\nFrom: Ann <ann@example.org>\r\n"
        b"Content-Type: multipart/mixed;\r\n boundary=b1\r\n\r\n"
    )
    mime = b"Content-Type: text/plain; charset=utf-8\r\n"
    mime += b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    plain = parts_of(MIXED)[0]
    raw = assemble(headers, [(plain, mime, b"Gr=C3=BC=C3=9Fe\r\n")])
    assert b"boundary=b1" not in raw  # the top-level content fields are the part's now
    msg = parse_message(raw, received_at=datetime(2026, 11, 24, tzinfo=UTC))
    assert (msg.message_id, msg.subject, msg.text) == ("<a@example.org>", "Hello", "Grüße")

    two = assemble(headers, [(plain, mime, b"one"), (plain, mime, b"two")])  # as IMAP sends
    assert parse_message(two, received_at=datetime(2026, 11, 24, tzinfo=UTC)).text == "one\ntwo"
    bare = parse_message(assemble(headers, []), received_at=datetime(2026, 11, 24, tzinfo=UTC))
    assert (bare.subject, bare.text) == ("Hello", "")
