"""maildaemon.parsers: raw bytes -> Message, on the project's own fixtures (tests/data/parsing)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maildaemon.errors import ParseError
from maildaemon.model import Address, Attachment, Message
from maildaemon.parsers import HEADER_FIELDS, parse_message, strip_from_line
from maildaemon.parsers import reply as reply_module
from maildaemon.parsers.ids import parse_ids
from maildaemon.parsers.subject import (
    base_subject,
    is_forward,
    is_generic_subject,
    normalize_subject,
    subject_tags,
    task_refs,
)
from maildaemon.parsers.threadindex import conversation_id

DATA = Path(__file__).resolve().parent / "data" / "parsing"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(name: str, **kwargs: int) -> Message:
    return parse_message(fixture_bytes(name), received_at=NOW, **kwargs)


def only_fields(raw: bytes, keep: tuple[str, ...]) -> bytes:
    """The message with every header field not named in ``keep`` removed, as IMAP's
    ``BODY.PEEK[HEADER.FIELDS (...)]`` plus the body would give it."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, sep, body = raw.partition(b"\r\n\r\n")
    wanted = {name.lower().encode() for name in keep}
    lines: list[bytes] = []
    keeping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if keeping:
                lines.append(line)
            continue
        keeping = line.split(b":", 1)[0].strip().lower() in wanted
        if keeping:
            lines.append(line)
    return b"".join(lines) + sep + body


def expected_synthetic_id(from_: str, to: str, date: str, subject: str, text: str) -> str:
    """SPEC 4's recipe, written out independently of the parser."""
    digest = hashlib.sha256()
    for value in (from_, to, date, subject):
        digest.update(value.encode())
        digest.update(b"\x00")
    digest.update(text.encode()[:1024])
    return f"<{digest.hexdigest()[:32]}@synthetic.maildaemon.invalid>"


# --- one test per fixture -------------------------------------------------------------


def test_plain_reply_with_folded_references():
    m = parse("plain_reply_folded_references.eml")
    assert m.message_id == "<reply-2@mail.example.org>"
    assert not m.synthetic_id
    assert m.in_reply_to == ("<reply-1@mail.example.com>",)
    assert m.references == ("<root-0@mail.example.com>", "<reply-1@mail.example.com>")
    assert m.parent_id == "<reply-1@mail.example.com>"
    assert m.from_ == Address("Bob Builder", "bob@example.org")
    assert m.to == (Address("Support, Team", "support@example.com"),)
    assert m.cc == (Address("", "alice@example.com"), Address("Carol", "carol@example.net"))
    assert m.reply_to == ()
    assert m.date == datetime(2026, 11, 3, 8, 14, 55, tzinfo=UTC)
    assert not m.date_is_fallback
    assert m.subject == "Re: Invoice 2026-117 is wrong"  # folded subject unfolded
    assert m.base_subject == "Invoice 2026-117 is wrong"
    assert m.normalized_subject == "invoice 2026-117 is wrong"
    assert not m.is_forward
    assert m.text.startswith("Hi Alice,\n\nthe amount is still 1.200 € instead of 1.020 €.")
    assert m.text.endswith("> Alice")  # the quotes stay in the stored text
    assert m.reply_text == "Hi Alice,\n\nthe amount is still 1.200 € instead of 1.020 €.\n\nBob"
    assert m.attachments == ()
    assert m.defects == ()
    assert m.size == len(fixture_bytes("plain_reply_folded_references.eml"))


def test_in_reply_to_without_angle_brackets_and_junk_references():
    m = parse("in_reply_to_without_brackets.eml")
    assert m.in_reply_to == ("<m1.abc@example.com>",)
    assert m.references == ()  # "(Your message of ...)" is not an id
    assert m.from_ == Address("", "dave@example.net")
    assert m.base_subject == "Login fails"
    assert m.date == datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
    assert m.defects == ()


def test_outlook_comma_separated_references_and_thread_index():
    m = parse("outlook_comma_references_thread_index.eml")
    assert m.message_id == "<AM0PR01MB1234C0FFEE@AM0PR01MB1234.eurprd01.prod.example.com>"
    assert m.references == (
        "<AM0PR01MB0001@AM0PR01MB0001.eurprd01.prod.example.com>",
        "<AM0PR01MB5678BEEF@AM0PR01MB5678.eurprd01.prod.example.com>",
    )
    assert m.in_reply_to == ("<AM0PR01MB5678BEEF@AM0PR01MB5678.eurprd01.prod.example.com>",)
    assert m.thread_index == "5e4f1a2b3c4d5e6f708192a3b4c5d6e7"
    assert m.from_ == Address("Eve Outlook", "eve@example.com")
    assert m.date == datetime(2026, 11, 4, 14, 3, 12, tzinfo=UTC)
    # CRLF file, quoted-printable soft line break joined, CRs gone
    assert "\r" not in m.text
    assert "in the sheet we shared last week." in m.text
    assert "Sent: Wednesday, November 4, 2026 1:00 PM" in m.text
    # the Outlook "From:/Sent:" block and the "Regards," signature are cut
    assert m.reply_text == (
        "Thanks Frank, I will send the numbers tomorrow. The totals are in the sheet "
        "we shared last week."
    )
    assert m.defects == ()


def test_encoded_word_subject_and_from():
    m = parse("encoded_words.eml")
    # two B-encoded words split inside a UTF-8 character, folded between them
    assert m.subject == "Überprüfung: Rechnung – Fällig"
    assert m.from_ == Address("Jörg Müller", "joerg.mueller@example.de")
    assert m.to == (Address("Support – Team", "support@example.com"),)
    assert m.text == "Bitte prüfen Sie die Rechnung.\n\nGrüße\nJörg"  # iso-8859-1 QP body
    assert m.reply_text == "Bitte prüfen Sie die Rechnung."  # "Grüße" starts the signature
    assert m.defects == ()


def test_german_aw_wg_subject_with_list_tag():
    m = parse("german_aw_wg_list_tag.eml")
    assert m.subject == "AW: [kunden-support] WG: Lieferung verspätet"  # raw UTF-8 header
    assert m.base_subject == "Lieferung verspätet"
    assert m.normalized_subject == "lieferung verspätet"
    assert not m.is_forward  # the outermost prefix is AW (a reply)
    assert m.reply_text == "Hallo Herr Schmidt,\n\ndie Ware ist heute rausgegangen."
    assert "Von: Hans Schmidt <hans@example.de>" in m.text
    assert m.cc == (Address("", "support@example.com"),)


def test_missing_message_id_and_date_fall_back():
    m = parse("missing_message_id_and_date.eml")
    assert m.synthetic_id
    assert m.message_id == expected_synthetic_id(
        "Ivan <ivan@example.org>",
        "support@example.com",
        "",
        "Password reset link expired",
        "The reset link you sent expired before I could use it.\nCan you send a new one?",
    )
    assert re.fullmatch(r"<[0-9a-f]{32}@synthetic\.maildaemon\.invalid>", m.message_id)
    assert m.date == NOW
    assert m.date_is_fallback
    assert m.defects == ("date: missing", "message-id: missing, synthetic id")


def test_absurd_year_0102_date_falls_back_to_received_time():
    m = parse("absurd_year_date.eml")
    assert m.date == NOW
    assert m.date_is_fallback
    assert m.defects == ("date: absurd 'Thu, 01 Jan 0102 10:00:00 +0000'",)


def test_unknown_charset_body_is_read_as_utf8_with_a_defect():
    m = parse("unknown_charset.eml")
    assert m.subject == "Prüfung"
    assert m.text == "Prüfung \ufffd fertig."
    assert m.defects == ("body: unknown charset 'x-unknown', read as utf-8",)


def test_multipart_with_pdf_attachment_and_inline_image():
    m = parse("multipart_pdf_and_inline_image.eml")
    assert m.text == "Please find the signed contract attached."
    assert m.attachments == (
        Attachment("logo.png", "image/png", 300),
        Attachment("Vertrag Müller.pdf", "application/pdf", 1000),  # RFC 2231 name
    )
    assert m.defects == ()


def test_html_only_body_is_converted_to_text():
    m = parse("html_only.eml")
    assert m.text == (
        "Hello team,\n\nthe server at db-2 is down & needs a restart.\nThanks!\n\n"
        "> Earlier: is db-2 ok?"
    )
    assert "alert" not in m.text and "color" not in m.text and "Ignored" not in m.text
    assert m.reply_text == "Hello team,\n\nthe server at db-2 is down & needs a restart.\nThanks!"


def test_top_posted_reply_drops_signature_and_quoted_history():
    m = parse("top_posted_reply_with_signature.eml")
    assert m.reply_text == "Sure, I will take this one."
    assert "-- \nGrace Hopper" in m.text
    assert m.base_subject == "Ticket 42 needs an owner"
    assert subject_tags(m.subject) == ("owner:grace", "#42")
    assert task_refs(m.subject) == (42,)


def test_out_of_office_auto_reply_markers():
    m = parse("out_of_office_auto_reply.eml")
    assert m.auto_submitted == "auto-replied"  # the comment "(vacation)" is dropped
    assert m.x_autoreply
    assert m.precedence == "auto_reply"
    assert m.list_id is None
    assert m.in_reply_to == ("<reply-2@mail.example.org>",)


def test_list_post_with_list_id_and_precedence_list():
    m = parse("list_post.eml")
    assert m.list_id == "support.lists.example.com"
    assert m.precedence == "list"
    assert m.auto_submitted is None
    assert not m.x_autoreply
    assert m.base_subject == "Printer on floor 3"
    assert subject_tags(m.subject) == ("ack",)


def test_references_loop_drops_the_messages_own_id():
    m = parse("references_loop.eml")
    assert m.message_id == "<loop-3@example.com>"
    assert m.in_reply_to == ()
    assert m.references == ("<loop-1@example.com>", "<loop-2@example.com>")
    assert m.parent_id == "<loop-2@example.com>"
    assert m.base_subject == "looping"
    assert m.defects == ("references: the message refers to itself",)


def test_broken_mime_without_closing_boundary():
    m = parse("broken_mime_missing_closing_boundary.eml")
    assert m.text == "The logs from last night are attached."
    # 400 base64 characters of a cut-off attachment: 300 bytes, estimated without decoding
    assert m.attachments == (Attachment("night.log.gz", "application/octet-stream", 300),)
    assert m.defects == ("mime: closing boundary missing",)


# --- hopeless input, dates, caps ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b" \r\n\t\n", "empty message"),
        (b"From sender@example.com Mon Jan  1 00:00:00 2026\n", "empty message"),
        (b"Hello,\nthis is only a body.\n", "no header block"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "no header block"),
    ],
)
def test_hopeless_input_raises_parse_error_with_a_reason(raw, reason):
    with pytest.raises(ParseError, match=reason):
        parse_message(raw, received_at=NOW)


def test_mbox_from_line_and_byte_order_mark_are_skipped():
    raw = fixture_bytes("in_reply_to_without_brackets.eml")
    envelope = b"From dave@example.net Mon Nov  2 11:30:00 2026\n" + raw
    assert strip_from_line(envelope) == raw
    assert strip_from_line(raw) == raw
    assert parse_message(envelope, received_at=NOW).message_id == "<r2@example.net>"
    header = parse_message(b"From : dave@example.net\n\nx\n", received_at=NOW)
    assert header.from_ == Address("", "dave@example.net")  # a header field, not an envelope
    bom = parse_message(b"\xef\xbb\xbf" + raw, received_at=NOW)
    assert bom.message_id == "<r2@example.net>"
    assert "headers: byte order mark before the first header" in bom.defects


@pytest.mark.parametrize(
    ("date", "defect"),
    [
        ("Thu, 32 Foo 0102", "date: unparseable 'Thu, 32 Foo 0102'"),
        ("yesterday", "date: unparseable 'yesterday'"),
        ("Mon, 01 Jan 1979 00:00:00 +0000", "date: absurd 'Mon, 01 Jan 1979 00:00:00 +0000'"),
        ("Mon, 30 Nov 2026 00:00:00 +0000", "date: absurd 'Mon, 30 Nov 2026 00:00:00 +0000'"),
    ],
)
def test_bad_dates_fall_back_with_a_defect(date, defect):
    raw = f"From: a@example.com\nDate: {date}\nMessage-ID: <d@example.com>\n\nx\n".encode()
    m = parse_message(raw, received_at=NOW)
    assert m.date == NOW and m.date_is_fallback
    assert defect in m.defects


def test_dates_become_aware_utc():
    cases = {
        "Tue, 03 Nov 2026 09:14:55 -0500": datetime(2026, 11, 3, 14, 14, 55, tzinfo=UTC),
        "Tue, 03 Nov 2026 09:14:55 -0000": datetime(2026, 11, 3, 9, 14, 55, tzinfo=UTC),
        "3 Nov 2026 09:14 GMT": datetime(2026, 11, 3, 9, 14, tzinfo=UTC),
        # within the 2 days of clock skew allowed after the delivery time
        "Fri, 27 Nov 2026 12:00:00 +0000": datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    }
    for header, expected in cases.items():
        raw = f"From: a@example.com\nDate: {header}\n\nx\n".encode()
        m = parse_message(raw, received_at=NOW)
        assert (m.date, m.date_is_fallback) == (expected, False), header
    naive = parse_message(b"From: a@example.com\n\nx\n", received_at=NOW.replace(tzinfo=None))
    assert naive.date == NOW and naive.date.tzinfo is UTC


def test_text_cap_is_in_utf8_bytes_and_cuts_on_a_character_boundary():
    body = "ä" * 3000  # 6000 bytes of UTF-8
    raw = ("From: a@example.com\nContent-Type: text/plain; charset=utf-8\n\n" + body).encode()
    m = parse_message(raw, received_at=NOW, text_cap=1001)
    assert len(m.text.encode("utf-8")) == 1000  # 1001 would split an "ä"
    assert m.text == "ä" * 500
    assert len(m.reply_text.encode("utf-8")) <= 1001
    full = parse_message(raw, received_at=NOW)
    assert full.text == body


def test_addresses_are_lower_cased_deduplicated_and_garbage_dropped():
    raw = (
        b"From: <Alice@EXAMPLE.com>\n"
        b'To: "Doe, Jane" <JANE@example.com>, jane@example.com, undisclosed-recipients:;\n'
        b"Cc: not an address, =?utf-8?Q?Ren=C3=A9?= <rene@example.com>, bob@example.com (Bob)\n"
        b"\nx\n"
    )
    m = parse_message(raw, received_at=NOW)
    assert m.from_ == Address("", "alice@example.com")
    assert m.to == (Address("Doe, Jane", "jane@example.com"),)
    # an old-style "(comment)" is the display name, as email.utils.getaddresses reads it
    assert m.cc == (Address("René", "rene@example.com"), Address("Bob", "bob@example.com"))
    assert any(d.startswith("cc: dropped address without '@'") for d in m.defects)


def test_defects_are_deduplicated_and_capped():
    parts = "".join(
        f"--b\nContent-Type: text/plain; charset=x-bad-{i}\n\nx{i}\n" for i in range(40)
    )
    raw = (
        "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        + parts
    ).encode()
    m = parse_message(raw, received_at=NOW)
    assert len(m.defects) == 20
    assert m.defects[-1].startswith("(+") and m.defects[-1].endswith("more defects)")
    assert len(set(m.defects)) == len(m.defects)


def test_huge_headers_stay_bounded():
    to = ", ".join(f"User {i} <user{i}@example.com>" for i in range(5000))
    refs = " ".join(f"<r{i}@example.com>" for i in range(5000))
    raw = f"From: a@example.com\nTo: {to}\nReferences: {refs}\n\nx\n".encode()
    assert len(raw) > 135_000
    m = parse_message(raw, received_at=NOW)
    assert len(m.to) == 500
    assert len(m.references) == 200
    assert m.references[0] == "<r0@example.com>"  # the root is kept
    assert m.references[-1] == "<r4999@example.com>"  # and the nearest ancestors


# --- synthetic ids: the same from every ingest path -----------------------------------------


def test_synthetic_id_is_the_same_from_the_imap_header_subset():
    whole = fixture_bytes("missing_message_id_and_date.eml")
    subset = only_fields(whole, HEADER_FIELDS)
    assert b"Received:" not in subset and b"X-Mailer" not in subset
    a = parse_message(whole, received_at=NOW)
    b = parse_message(subset, received_at=NOW + timedelta(hours=5))
    assert a.synthetic_id and b.synthetic_id
    assert a.message_id == b.message_id
    # IMAP hands out CRLF line endings
    crlf = parse_message(subset.replace(b"\n", b"\r\n"), received_at=NOW)
    assert crlf.message_id == a.message_id


def test_synthetic_id_of_a_multipart_equals_header_subset_plus_its_text_part():
    whole = fixture_bytes("multipart_pdf_and_inline_image.eml").replace(
        b"Message-ID: <mp-1@example.com>\n", b""
    )
    a = parse_message(whole, received_at=NOW)
    # what an IMAP source can fetch: the header fields, and the text part with its MIME header
    fields = only_fields(whole, ("From", "To", "Date", "Subject"))
    head = fields.partition(b"\n\n")[0]
    text_part = (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
        b"Please find the signed contract attached."
    )
    b = parse_message(head + b"\n" + text_part, received_at=NOW)
    assert a.synthetic_id and b.synthetic_id
    assert a.text == b.text
    assert a.message_id == b.message_id


def test_synthetic_id_changes_with_the_text():
    whole = fixture_bytes("missing_message_id_and_date.eml")
    other = whole.replace(b"Can you send a new one?", b"Can you send two?")
    assert (
        parse_message(whole, received_at=NOW).message_id
        != parse_message(other, received_at=NOW).message_id
    )


def test_unusable_message_id_gets_a_synthetic_one():
    m = parse_message(b"From: a@example.com\nMessage-ID: <>\n\nx\n", received_at=NOW)
    assert m.synthetic_id
    assert "message-id: unusable '<>', synthetic id" in m.defects


# --- subjects -------------------------------------------------------------------------------

SUBJECTS = [
    # (subject, base_subject, normalized_subject, is_forward)
    ("Re: hello", "hello", "hello", False),
    ("RE: RE: Hello", "Hello", "hello", False),
    ("Fwd: Re: status", "status", "status", True),
    ("FW: meeting notes", "meeting notes", "meeting notes", True),
    ("AW: WG: Rechnung", "Rechnung", "rechnung", False),
    ("WG: AW: Rechnung", "Rechnung", "rechnung", True),
    ("SV: Faktura", "Faktura", "faktura", False),
    ("VS: Lasku", "Lasku", "lasku", False),
    ("VB: Offert", "Offert", "offert", True),
    ("Antw: Offerte", "Offerte", "offerte", False),
    ("Odp: Faktura", "Faktura", "faktura", False),
    ("PD: Faktura", "Faktura", "faktura", True),
    ("R: Fattura", "Fattura", "fattura", False),
    ("RIF: Fattura", "Fattura", "fattura", False),
    ("I: Fattura", "Fattura", "fattura", True),
    ("TR : Facture", "Facture", "facture", True),
    ("Réf : Facture", "Facture", "facture", False),
    ("Rép: Facture", "Facture", "facture", False),
    ("RV: Factura", "Factura", "factura", True),
    ("ENC: Fatura", "Fatura", "fatura", True),
    ("RES: Fatura", "Fatura", "fatura", False),
    ("Ynt: Fatura", "Fatura", "fatura", False),
    ("İLT: Fatura", "Fatura", "fatura", True),
    ("回复：发票", "发票", "发票", False),
    ("转发: 发票", "发票", "发票", True),
    ("回覆: 發票", "發票", "發票", False),
    ("轉寄：發票", "發票", "發票", True),
    ("Re[2]: counter", "counter", "counter", False),
    ("RE (3): counter", "counter", "counter", False),
    ("Re^2: counter", "counter", "counter", False),
    ("[list] Re: [list] Re: topic", "topic", "topic", False),
    ("[linux-ext4] Fwd: topic", "topic", "topic", True),
    ("Re: [PATCH v2 3/7] ext4: fix", "[PATCH v2 3/7] ext4: fix", "ext4: fix", False),
    ("[PATCH v3 3/7] ext4: fix", "[PATCH v3 3/7] ext4: fix", "ext4: fix", False),
    ("Re: [ext4] question", "[ext4] question", "question", False),
    ("[EXTERNAL] Invoice", "[EXTERNAL] Invoice", "invoice", False),
    ("Re: [owner:alice] Printer  [stage:qa]", "Printer", "printer", False),
    ("[@Bob] [DUE:2026-12-01] Re: Printer [done]", "Printer", "printer", False),
    ("Fwd: Report (fwd)", "Report (fwd)", "report", True),
    ("Rest: of the subject", "Rest: of the subject", "rest: of the subject", False),
    ("Re:", "", "", False),
    ("", "", "", False),
    ("  Re:   spaced\tout  ", "spaced out", "spaced out", False),
]


@pytest.mark.parametrize(("subject", "base", "normalized", "forward"), SUBJECTS)
def test_subject_normalization_table(subject, base, normalized, forward):
    assert base_subject(subject) == base
    assert normalize_subject(subject) == normalized
    assert is_forward(subject) is forward


def test_subject_tags_left_to_right_normalized():
    s = "[Owner: Alice] Re: x [@Bob] [DONE] [#042] [stage:QA] [client:Acme Corp] [due:3d]"
    assert subject_tags(s) == (
        "owner:alice",
        "@bob",
        "done",
        "#42",
        "stage:qa",
        "client:acme corp",
        "due:3d",
    )
    assert subject_tags("[closed] [resolved] [ack]") == ("closed", "resolved", "ack")
    assert subject_tags("[PATCH] [owner:] [#] [EXTERNAL] no tags") == ()
    assert task_refs("[#42] Re: [#7] again [#42]") == (42, 7)
    assert task_refs("no refs [42]") == ()


@pytest.mark.parametrize(
    ("normalized", "generic"),
    [
        ("", True),
        ("hi", True),
        ("hello!", True),
        ("question?", True),
        ("(no subject)", True),
        ("no subject", True),
        ("follow up", True),
        ("urgent", True),
        ("re", True),
        ("invoice 2026-117 is wrong", False),
        ("printer on floor 3", False),
        ("help with the vpn", False),
    ],
)
def test_generic_subjects(normalized, generic):
    assert is_generic_subject(normalized) is generic


# --- ids and Thread-Index -------------------------------------------------------------------

IDS = [
    (None, ()),
    ("", ()),
    ("<a@b>", ("<a@b>",)),
    ("  <a@b>  <c@d>", ("<a@b>", "<c@d>")),
    ("<a@b>\r\n\t<c@d>\r\n <e@f>", ("<a@b>", "<c@d>", "<e@f>")),
    ("<a@b>,<c@d>, <e@f>", ("<a@b>", "<c@d>", "<e@f>")),
    ("a@b", ("<a@b>",)),
    ("a@b, c@d", ("<a@b>", "<c@d>")),
    ("a@b c@d;e@f", ("<a@b>", "<c@d>", "<e@f>")),
    ("<a@b> <c@d> <a@b>", ("<a@b>", "<c@d>")),
    ("(Your message of Mon, 02 Nov 2026 10:00:00 +0100)", ()),
    ("Mon, 02 Nov 2026 10:00:00 +0100", ()),
    ('Your message of "Mon, 2 Nov 2026" <x.1@host.example>', ("<x.1@host.example>",)),
    ("<x.1@host.example>; from bob@example.com on Mon", ("<x.1@host.example>",)),
    ("bob@example.com's message of Monday", ()),
    ("<>", ()),
    ("<no-at-sign>", ()),
    ("<@host>", ()),
    ("< a@b >", ("<a@b>",)),
    ("<<a@b>>", ("<a@b>",)),
    ("=?utf-8?Q?<a@b>?=", ("<a@b>",)),
    ("=?utf-8?B?PGFAYj4=?=", ("<a@b>",)),
]


@pytest.mark.parametrize(("value", "expected"), IDS)
def test_parse_ids_table(value, expected):
    assert parse_ids(value) == expected


def test_parse_ids_keeps_the_root_and_the_last_ones():
    value = " ".join(f"<{i}@x>" for i in range(1000))
    ids = parse_ids(value, limit=5)
    assert ids == ("<0@x>", "<996@x>", "<997@x>", "<998@x>", "<999@x>")


def test_conversation_id_from_thread_index():
    assert conversation_id("Ads/KhsMXk8aKzxNXm9wgZKjtMXW5wAAobLD") == (
        "5e4f1a2b3c4d5e6f708192a3b4c5d6e7"
    )
    assert conversation_id(" Ads/KhsMXk8aKzxN\r\n Xm9wgZKjtMXW5w ") == (  # folded, no padding
        "5e4f1a2b3c4d5e6f708192a3b4c5d6e7"
    )
    assert conversation_id(None) is None
    assert conversation_id("") is None
    assert conversation_id("AQID") is None  # too short
    assert conversation_id("not base64 at all, this is garbage!") is None
    assert conversation_id("A" * 40) is None  # an all-zero GUID


# --- the reply parser's guarded regexes give the plain regexes' results ----------------------

REPLY_SAMPLES = [
    "Thanks, looks good.\n\nOn Mon, 2 Nov 2026 at 10:00, A <a@x> wrote:\n> hi\n",
    "Hi\n\nBest regards\nBob\n\nFrom: A\nSent: Monday\nTo: B\nSubject: x\n\nold text",
    # the same Outlook-style block twice: the parser finds headers with str.find
    "To: Entity <e@x>\nFrom: Ex <x@x>\nSubject: s\n\nbody\n"
    "To: Entity <e@x>\nFrom: Ex <x@x>\nSubject: s",
    "Text\n\n______________________________________\n\nSeparated",
    "\n\n________________________________________\nAt the start",
    "Thanks, I will look.\n\nCheers\n-- \nsig",
    "Am 02.11.2026 um 10:00 schrieb Hans <h@x>:\nalt",
    "Le 2 nov. 2026 à 10:00, Jean a écrit :\n> vieux",
    "El lun, 2 nov 2026 a las 10:00, Ana escribió:\nviejo",
    "Op ma 2 nov 2026 om 10:00 schreef Piet:\noud",
    "Il giorno lun 2 nov 2026, Gino ha scritto:\nvecchio",
    "-----Original Message-----\nFrom: a\nSent: b\n",
    "Sent from my iPhone",
    "CAUTION: external mail. Be careful with this mail.\nReal text.",
]


@pytest.mark.parametrize("sample", REPLY_SAMPLES)
def test_guarded_reply_regexes_match_the_plain_ones(sample):
    message = reply_module.EmailMessage(
        text=sample, languages=list(reply_module.REPLY_LANGUAGES), keep_hyphen_lists=True
    )
    text = message.text  # normalized as the parser sees it
    header, disclaimers, signature = reply_module._compile()
    assert header.findall(text) == header.plain.findall(text)
    assert [d.strip() for d in disclaimers.findall(text)] == [
        d.strip() for d in disclaimers.plain.findall(text)
    ]
    fast, plain = signature.search(text), signature.plain.search(text)
    assert (fast and fast.group().strip()) == (plain and plain.group().strip())


def test_reply_text_is_bounded_and_falls_back_to_unquoted_text():
    long_text = "word " * 5000
    assert len(reply_module.reply_text(long_text)) <= reply_module.REPLY_PREFIX_CHARS
    assert reply_module.strip_quoted("a\n> b\n  > c\nd") == "a\nd"
    assert reply_module.reply_text("> only quotes\n>> here") == ""
