"""maildaemon.parsers: raw bytes -> Message, on the project's own fixtures (tests/data/parsing)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import re
import tracemalloc
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
    # mail-parser's charset recovery, reported in its words
    assert m.defects == (
        "mime: CharsetDecodeDefect: part 0, charset 'x-unknown' failed; "
        "decoded with utf-8 replacement characters.",
    )


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
    assert m.defects == (
        "mime: CloseBoundaryNotFoundDefect: A start boundary was found, "
        "but not the corresponding close boundary.",
    )


def test_iso_2022_jp_7bit_text_is_decoded():
    # 7-bit on the wire, so mail-parser alone would hand the escape sequences back as text
    m = parse("iso_2022_jp_7bit.eml")
    assert m.subject == "請求書"
    assert m.from_ == Address("山田", "yamada@example.jp")
    assert m.text == "お世話になっております。\n請求書を送ります。"
    assert m.defects == ()


def test_base64_text_followed_by_a_list_footer():
    # the stdlib gives up on such a payload and returns it still encoded
    m = parse("base64_text_with_list_footer.eml")
    assert m.text == "Der Drucker im 3. Stock ist repariert.\n\nGrüße, Uwe"
    assert m.defects == ()


def test_multipart_whose_start_boundary_is_missing_is_read_as_text():
    m = parse("multipart_start_boundary_missing.eml")
    assert m.text == "The VPN drops every ten minutes since this morning."
    assert m.defects == ("mime: start boundary not found, body read as text",)


def test_8bit_bytes_in_quoted_printable_text_are_decoded_once():
    raw = (
        b"From: a@example.com\nContent-Type: text/plain; charset=windows-1252\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n\x93Caf=E9\x94 is closed.\n"
    )
    assert parse_message(raw, received_at=NOW).text == "\u201cCafé\u201d is closed."


@pytest.mark.parametrize(("depth", "defect"), [(30, "mime: nested deeper than 10"), (2000, "")])
def test_deeply_nested_multiparts_are_cut(depth, defect):
    levels = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    )
    m = parse_message(b"From: a@example.com\n" + levels + b"\nhi\n", received_at=NOW)
    assert m.from_ == Address("", "a@example.com")
    assert any(d.startswith(defect or "mime: nested too deep to parse") for d in m.defects)


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


# --- reply text: mail-parser-reply's quote headers and signatures ----------------------------

REPLY_SAMPLES = [
    (
        "Thanks, looks good.\n\nOn Mon, 2 Nov 2026 at 10:00, A <a@x> wrote:\n> hi\n",
        "Thanks, looks good.",
    ),
    ("Hi\n\nBest regards\nBob\n\nFrom: A\nSent: Monday\nTo: B\nSubject: x\n\nold text", "Hi"),
    ("Text\n\n______________________________________\n\nSeparated", "Text\n\nSeparated"),
    ("Thanks, I will look.\n\nCheers\n-- \nsig", "Thanks, I will look.\n\nCheers"),
    ("Neu.\n\nAm 02.11.2026 um 10:00 schrieb Hans <h@x>:\nalt", "Neu."),
    ("Nouveau.\n\nLe 2 nov. 2026 à 10:00, Jean a écrit :\nvieux", "Nouveau."),
    ("Ok.\n\n-----Original Message-----\nFrom: a\nSent: b\n", "Ok."),
    ("Sent from my iPhone", ""),
    ("CAUTION: external mail. Be careful with this mail.\nReal text.", "Real text."),
    # "- item" lines are a list, not the start of a signature (keep_hyphen_lists)
    (
        "Steps:\n- restart the server\n- clear the cache",
        "Steps:\n- restart the server\n- clear the cache",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REPLY_SAMPLES)
def test_reply_text_drops_quote_headers_and_signatures(text, expected):
    assert reply_module.reply_text(text) == expected


def test_reply_text_is_bounded_and_falls_back_to_unquoted_text():
    long_text = "word " * 5000
    assert len(reply_module.reply_text(long_text)) <= reply_module.REPLY_PREFIX_CHARS
    assert reply_module.strip_quoted("a\n> b\n  > c\nd") == "a\nd"
    assert reply_module.reply_text("> only quotes\n>> here") == ""


# --- the reply shim reads every text as the plain library does ------------------------------

REPLY_PIECES = [
    "Thanks, that fixed it.",
    "Ich schaue mir das morgen an.\nBis dann",
    "- restart the server\n- clear the cache",
    "Best regards\nBob",
    "Mit freundlichen Grüßen\nHans Müller",
    "Cordialement,\nJean",
    "Saludos,\nAna",
    "Cordiali saluti\nGino",
    "Met vriendelijke groet,\nPiet",
    "-- \nsig line",
    "--\nsig line",
    "Sent from my iPhone",
    "Gesendet von meinem iPad",
    "Envoyé depuis mon mobile",
    "CAUTION: external mail. Do not click links in this mail.",
    "Hinweis: Diese E-Mail ist vertraulich. Mail",
    "On Mon, 2 Nov 2026 at 10:00, A <a@x> wrote:",
    "> On Mon, 2 Nov 2026 at 10:00, A <a@x> wrote:",
    "On Mon, 2 Nov 2026 at 10:00 Alice Example\n<alice@example.com> wrote:",
    "Am 02.11.2026 um 10:00 schrieb Hans <h@x>:",
    "Le 2 nov. 2026 à 10:00, Jean a écrit :",
    "El lun, 2 nov 2026 a las 10:00, Ana escribió:",
    "Il giorno lun 2 nov 2026, Gino ha scritto:",
    "Op ma 2 nov 2026 om 10:00 schreef Piet:",
    "From: A <a@x>\nSent: Monday, 2 November 2026 10:00\nTo: B <b@x>\nSubject: Re: x",
    "*From:* A\n*Sent:* Monday\n*To:* B",
    "Von: Hans\nGesendet: Montag\nAn: Uwe\nBetreff: AW: Drucker",
    "De : Jean\nEnvoyé : lundi\nÀ : Marc\nObjet : RE: x",
    "De: Ana\nEnviado: lunes\nPara: Luis\nAsunto: RE: x",
    "Da: Gino\nInviato: lunedì\nA: Pia\nOggetto: R: x",
    "Van: Piet\nVerzonden: maandag\nAan: Jan\nOnderwerp: RE: x",
    "-----Original Message-----",
    "________________________________",
    "-----------------------------------------",
    "> quoted line\n>> deeper",
    "old text from the thread",
    "   indented line   ",
    "Line with trailing CR\r",
    "ünïcödé ✓ 漢字",
    "",
]


def generated_reply_texts(count: int, seed: int = 20261126) -> list[str]:
    """Texts made of quote headers, signatures, separators and prose in random order."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = rng.choices(REPLY_PIECES, k=rng.randint(1, 12))
        joiners = rng.choices(["\n", "\n\n", "\r\n", "\n\n\n", " "], k=len(parts))
        texts.append("".join(p + j for p, j in zip(parts, joiners, strict=True)))
    return texts


def all_fixture_texts() -> list[str]:
    """The text of every message under tests/data, quoted lines kept and removed."""
    texts = []
    for path in sorted((DATA.parent).rglob("*.eml")):
        text = parse_message(path.read_bytes(), received_at=NOW).text
        texts += [text, reply_module.strip_quoted(text)]
    return [t for t in texts if t.strip()]


def test_the_reply_shim_is_on_for_the_pinned_library():
    # if this fails after an upgrade of mail-parser-reply, the shim is off (plain library,
    # slower): check SHIM_PROBLEM, re-verify the wrappers, update VERIFIED_VERSIONS
    assert reply_module.SHIM_ACTIVE, reply_module.SHIM_PROBLEM
    assert reply_module.REPLY_LANGUAGES == ("en", "de", "fr", "es", "it", "nl")


@pytest.mark.parametrize(
    "source", ["fixtures", "generated"], ids=["every fixture", "generated texts"]
)
def test_reply_shim_reads_texts_as_the_plain_library(source):
    texts = all_fixture_texts() if source == "fixtures" else generated_reply_texts(400)
    assert len(texts) > 40
    header, disclaimers, signature = (
        reply_module._SHIM[name] for name in reply_module._REGEX_FIELDS
    )
    for text in texts:
        cut = text[: reply_module.REPLY_PREFIX_CHARS]
        assert reply_module.reply_body(cut) == reply_module.reply_body(cut, shim=False), cut
        # and each wrapped regex gives what the library uses of the plain one's result
        seen = reply_module.EmailMessage(text=cut).text  # normalized as the library reads it
        assert header.findall(seen) == header.plain.findall(seen)
        assert [d.strip() for d in disclaimers.findall(seen)] == [
            d.strip() for d in disclaimers.plain.findall(seen)
        ]
        fast, plain = signature.search(seen), signature.plain.search(seen)
        assert (fast and fast.group().strip()) == (plain and plain.group().strip())


def test_reply_shim_is_off_when_the_library_internals_differ():
    @dataclasses.dataclass
    class OtherEmailMessage:  # a library version without the private regex fields
        text: str
        languages: list[str] = dataclasses.field(default_factory=list)
        keep_hyphen_lists: bool = False

    regexes, problem = reply_module._build(OtherEmailMessage)
    assert regexes == {}
    assert problem is not None and "_header_regex" in problem

    class NotADataclass:
        pass

    regexes, problem = reply_module._build(NotADataclass)
    assert regexes == {} and problem and problem.startswith("TypeError")


@pytest.mark.parametrize("broken", ["off", "raising"])
def test_reply_text_uses_the_plain_library_when_the_shim_is_off_or_fails(monkeypatch, broken):
    class Raising:
        def findall(self, text: str) -> list[str]:
            raise RuntimeError("internals changed")

        def __bool__(self) -> bool:
            return True

    shim = {} if broken == "off" else {**reply_module._SHIM, "_header_regex": Raising()}
    monkeypatch.setattr(reply_module, "_SHIM", shim)
    for text, expected in REPLY_SAMPLES:
        assert reply_module.reply_text(text) == expected


def test_reply_text_reads_4096_characters_after_quoted_lines():
    quoted = "> old\n" * 3000
    text = quoted + "x" * 5000
    assert reply_module.reply_text(text) == "x" * 4096


# --- huge messages: long base64 runs are elided before the stdlib parse -----------------------


def mime_message(parts: list[bytes], nl: bytes = b"\n") -> bytes:
    head = (
        b"From: a@example.com\nTo: b@example.com\nSubject: big\n"
        b"Message-ID: <big@example.com>\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="=_b"\n\n'
    )
    body = b"".join(b"--=_b\n" + part for part in parts) + b"--=_b--\n"
    return (head + body).replace(b"\n", nl)


def base64_part(data: bytes, headers: bytes) -> bytes:
    return headers + b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data)


def parse_traced(raw: bytes, **kwargs: int) -> tuple[Message, float]:
    """The message and the peak of memory allocated while parsing it, in MB."""
    tracemalloc.start()
    try:
        m = parse_message(raw, received_at=NOW, **kwargs)
        return m, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def parse_unelided(monkeypatch: pytest.MonkeyPatch, raw: bytes, **kwargs: int) -> Message:
    from maildaemon.parsers import message as message_module

    with monkeypatch.context() as patch:
        patch.setattr(message_module, "elide_base64", lambda data, start, keep: data[start:])
        return parse_message(raw, received_at=NOW, **kwargs)


@pytest.mark.parametrize("nl", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_a_20_mb_attachment_is_sized_exactly_in_bounded_memory(nl):
    pdf = random.Random(1).randbytes(20_000_001)  # 20 MB, base64 with "=" padding
    raw = mime_message(
        [
            b"Content-Type: text/plain; charset=utf-8\n\nSee the report attached.\n",
            base64_part(pdf, b'Content-Type: application/pdf; name="report.pdf"\n'),
        ],
        nl,
    )
    assert len(raw) > 27_000_000
    m, peak = parse_traced(raw)
    assert m.text == "See the report attached."
    assert m.attachments == (Attachment("report.pdf", "application/pdf", len(pdf)),)
    assert m.size == len(raw)
    assert peak < 40, f"{peak:.0f} MB"


def test_a_20_mb_base64_text_part_still_gives_capped_text():
    lines = "".join(f"Zeile {i}: Grüße aus dem Log.\n" for i in range(700_000)).encode()
    raw = mime_message([base64_part(lines, b"Content-Type: text/plain; charset=utf-8\n")])
    assert len(raw) > 20_000_000
    m, peak = parse_traced(raw, text_cap=4096)
    assert m.text.startswith("Zeile 0: Grüße aus dem Log.\nZeile 1: Grüße")
    assert 4000 < len(m.text.encode()) <= 4096
    assert m.attachments == ()
    assert peak < 40, f"{peak:.0f} MB"


def test_elided_runs_give_what_the_unelided_parse_gives(monkeypatch):
    rng = random.Random(2)
    hexdump = "".join(f"{rng.getrandbits(128):032x}\n" for _ in range(6000)).encode()
    inner = mime_message([base64_part(rng.randbytes(150_000), b"Content-Type: image/png\n")])
    parts = [
        b"Content-Type: text/plain\n\nHello.\n",
        base64_part(rng.randbytes(100_000), b"Content-Type: application/zip; name=a.zip\n"),
        base64_part(rng.randbytes(100_002), b"Content-Type: application/octet-stream\n"),
        # not base64: 7-bit lines of base64 letters, sized from the bytes
        b"Content-Type: text/csv; name=hashes.csv\n\n" + hexdump,
        b"Content-Type: message/rfc822\n\n" + inner,
        base64_part(rng.randbytes(200_000), b"Content-Type: text/html\n"),
    ]
    for nl in (b"\n", b"\r\n"):
        raw = mime_message(parts, nl)
        elided = parse_message(raw, received_at=NOW, text_cap=2048)
        assert elided == parse_unelided(monkeypatch, raw, text_cap=2048)
        sizes = [a.size for a in elided.attachments]
        # the last line break before a boundary belongs to the boundary
        assert sizes[:3] == [100_000, 100_002, len(hexdump.replace(b"\n", nl)) - len(nl)]


def test_a_text_part_that_would_read_elided_bytes_is_parsed_again_whole(monkeypatch):
    # the top-level header ends at the blank line, so the "MIME parts" below are the text
    # of a text/plain message; elide.py takes them for an attachment's header and body
    blob = base64.encodebytes(random.Random(3).randbytes(100_000))
    raw = (
        b"From: a@example.com\nSubject: pasted\n\n"
        b'Content-Type: multipart/mixed; boundary="p"\n\n--p\n'
        b"Content-Type: application/octet-stream\n\n" + blob + b"--p--\n"
    )
    m = parse_message(raw, received_at=NOW)
    assert "maildaemon elided" not in m.text
    assert m == parse_unelided(monkeypatch, raw)
    assert m.text.startswith('Content-Type: multipart/mixed; boundary="p"\n\n--p\n')
