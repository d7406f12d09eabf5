"""IMAP's BODYSTRUCTURE -> the parts to fetch, and fetched pieces -> bytes to parse.

Pure functions for ``maildaemon.imap`` (which does the fetching): which leaves of a
message are its text as ``body.py`` reads it (so IMAP fetches exactly those, never an
attachment), how many raw bytes of a text part ``ingest.text_cap`` needs, the attachment
records BODYSTRUCTURE gives without downloading anything, and the small message that the
fetched header fields and text parts make for ``parse_message``.

BODYSTRUCTURE comes as imapclient parses it: nested tuples of bytes, ints and None; a
multipart is ``([children], subtype, params, ...)``, a leaf ``(type, subtype, params, id,
description, encoding, size, ...)`` with the extension fields after it (RFC 3501 7.4.2).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

from maildaemon.model import Attachment
from maildaemon.parsers.body import (
    MAX_DEPTH,
    MAX_PARTS,
    RAW_PER_HTML_BYTE,
    RAW_PER_TEXT_BYTE,
    describe_part,
    is_text,
)

SLACK_BYTES = 256  # raw bytes fetched beyond the estimate: leading blanks, line ends
# Raw bytes of a text part per byte of text, typically: by transfer encoding (CRLF line
# ends; base64 is 4/3 and line ends; quoted-printable is mostly ASCII), for markup, and for
# the wide charsets.
_ENCODING_FACTOR = {"base64": 1.4, "quoted-printable": 1.3}
_HTML_FACTOR = 4.0
_WIDE_CHARSETS = (("utf-32", 4), ("ucs-4", 4), ("utf-16", 2), ("ucs-2", 2))
_CONTENT_FIELDS = frozenset({b"content-type", b"content-transfer-encoding"})
# A MIME token (RFC 2045) as a clean header field carries it; anything else in the type,
# a parameter or the encoding of a top-level part, and its content fields are fetched as
# they are written instead of being rebuilt from the structure.
_MIME_TOKEN = re.compile(rb"[A-Za-z0-9!#$&^_.+-]+")
_LOWER_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_MONTHS = {
    m: i
    for i, m in enumerate(
        (
            b"JAN",
            b"FEB",
            b"MAR",
            b"APR",
            b"MAY",
            b"JUN",
            b"JUL",
            b"AUG",
            b"SEP",
            b"OCT",
            b"NOV",
            b"DEC",
        ),
        1,
    )
}
_INTERNALDATE = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)


@dataclass(frozen=True, slots=True)
class Part:
    """One leaf of a message's MIME tree."""

    section: str  # "1", "2.1", ...
    ctype: str
    encoding: str
    charset: str | None
    size: int  # octets, transfer-encoded
    lines: int | None
    text: bool  # read as text, not an attachment
    filename: str | None
    top: bool  # the message is this single part: its MIME fields are in the header


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "surrogateescape")
    return "" if value is None else str(value)


def _params(raw: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, tuple | list):
        return []
    items = [_text(v) for v in raw]
    return list(zip(items[::2], items[1::2], strict=False))


def _header_value(value: str, params: list[tuple[str, str]]) -> str:
    out = value
    for key, val in params:
        if key.endswith("*"):  # RFC 2231: charset'lang'%XX, as it came
            out += f"; {key}={val}"
        else:
            out += '; {}="{}"'.format(key, val.replace("\\", "\\\\").replace('"', '\\"'))
    return out


def _plain_type(ctype: str, params: Any) -> bool:
    """A type of two tokens with parameters of tokens, none a file name: the stdlib reads
    it as it is, and finds no file name in it (most parts of most mail)."""
    if not _LOWER_TYPE.fullmatch(ctype):
        return False
    if params is None:
        return True
    if not isinstance(params, tuple | list):
        return False
    for word in params[::2]:
        if not isinstance(word, bytes) or word[:4].lower() == b"name":
            return False
    return all(isinstance(w, bytes) and _MIME_TOKEN.fullmatch(w) for w in params)


def _describe(
    ctype: str, params: Any, disposition: Any, defects: list[str]
) -> tuple[str, str | None, str | None]:
    """Content type, disposition and file name as ``body.py`` reads them from the MIME
    header fields BODYSTRUCTURE describes."""
    if _plain_type(ctype, params) and not (
        isinstance(disposition, tuple | list) and disposition and disposition[0]
    ):
        return ctype, None, None  # what describe_part makes of it, without the stdlib
    part = EmailMessage(policy=compat32)
    part["Content-Type"] = _header_value(ctype, _params(params))
    if isinstance(disposition, tuple | list) and disposition and disposition[0]:
        part["Content-Disposition"] = _header_value(
            _text(disposition[0]), _params(disposition[1] if len(disposition) > 1 else None)
        )
    return describe_part(part, defects)


def _no_boundary(children: list[Any]) -> bool:
    """Dovecot's BODYSTRUCTURE of a multipart in which no boundary was found: one empty
    text/plain part. (A real multipart holding only an empty text part looks the same; its
    body, fetched whole and parsed, gives the same result either way.)"""
    if len(children) != 1 or isinstance(children[0][0], list):
        return False
    only = children[0]
    return f"{_text(only[0])}/{_text(only[1])}".lower() == "text/plain" and not only[6]


def is_multipart(body: Any) -> bool:
    return isinstance(body, tuple | list) and bool(body) and isinstance(body[0], list)


def content_fields(body: Any) -> bytes | None:
    """The Content-Type and Content-Transfer-Encoding fields of a single-part message,
    rebuilt from its BODY structure, or None when they cannot be rebuilt exactly as a
    parser would read the written ones (a multipart, or anything but plain tokens: the
    server may have repaired a broken field, so only a clean one is taken from it).
    Missing fields come back as the defaults (text/plain, us-ascii, 7bit), which read
    the same as none."""
    if is_multipart(body) or not isinstance(body, tuple | list) or len(body) < 6:
        return None
    type_, subtype, params, encoding = body[0], body[1], body[2], body[5]
    words = [type_, subtype]
    if params is not None:
        if not isinstance(params, tuple | list) or len(params) % 2:
            return None
        words += list(params)
    if encoding is not None:
        words.append(encoding)
    if not all(isinstance(w, bytes) and _MIME_TOKEN.fullmatch(w) for w in words):
        return None
    value: bytes = type_ + b"/" + subtype
    for key, val in zip(params[::2], params[1::2], strict=True) if params else ():
        value += b"; " + key + b"=" + val
    out = b"Content-Type: " + value + b"\r\n"
    if encoding is not None:
        out += b"Content-Transfer-Encoding: " + encoding + b"\r\n"
    return out


def parts_of(body: Any) -> list[Part]:
    """The leaves of a BODYSTRUCTURE in order, with the limits ``body.py`` applies."""
    out: list[Part] = []
    defects: list[str] = []
    count = 1

    def walk(node: Any, section: str, depth: int) -> None:
        nonlocal count
        if isinstance(node[0], list):  # multipart: (children, subtype, params, ...)
            if depth >= MAX_DEPTH:
                return
            if _no_boundary(node[0]):  # body.py reads such a multipart's body as text
                top = not section
                text = Part(section or "TEXT", "text/plain", "", None, 0, None, True, None, top)
                out.append(text)
                return
            children = node[0][: max(MAX_PARTS - count, 0)]
            count += len(children)
            for i, child in enumerate(children, 1):
                walk(child, f"{section}.{i}" if section else str(i), depth + 1)
            return
        ctype = f"{_text(node[0])}/{_text(node[1])}".lower()
        top = not section
        # The top level of a single-part message: body.py reads only Content-Type (and
        # Content-Transfer-Encoding) there, which are in the fetched header fields.
        if ctype.startswith("text/"):
            lines, disposition_at = node[7], 9
        elif ctype == "message/rfc822":
            lines, disposition_at = node[9] if len(node) > 9 else None, 11
        else:
            lines, disposition_at = None, 8
        disposition = None if top or len(node) <= disposition_at else node[disposition_at]
        kind, disp, filename = _describe(ctype, node[2], disposition, defects)
        params = dict((k.lower(), v) for k, v in _params(node[2]))
        out.append(
            Part(
                section=section or "1",
                ctype=kind,
                encoding=_text(node[5]).strip().lower(),
                charset=params.get("charset"),
                size=int(node[6] or 0),
                lines=int(lines) if isinstance(lines, int) else None,
                text=is_text(kind, disp, filename),
                filename=filename,
                top=top,
            )
        )

    walk(body, "", 0)
    return out


def attachment_of(part: Part) -> Attachment:
    """The attachment record of a part, its size estimated from BODYSTRUCTURE as decoded
    on disk: BODYSTRUCTURE counts the transfer-encoded octets with CRLF line ends; base64
    is 3/4 of its characters (lines taken as 76 characters where BODYSTRUCTURE does not
    count them; the padding is unknown), text has LF line ends on disk. So a size is off by
    a few bytes at most; the exact BINARY.SIZE is not asked for, since Dovecot 2.3 drops
    the connection on a broken base64 part (and gets some sizes wrong)."""
    size = part.size
    if part.encoding == "base64":
        line_ends = 2 * part.lines if part.lines is not None else 2 * (size // 78)
        size = max(0, size - line_ends) * 3 // 4
    elif part.lines is not None:
        size = max(0, size - part.lines)
    return Attachment(part.filename or "", part.ctype, size)


def _factor(part: Part) -> float:
    factor = _HTML_FACTOR if part.ctype == "text/html" else 1.0
    factor *= _ENCODING_FACTOR.get(part.encoding, 1.05)
    charset = (part.charset or "").lower()
    return factor * next((n for prefix, n in _WIDE_CHARSETS if charset.startswith(prefix)), 1)


def text_limit(part: Part, text_cap: int, full: bool = False) -> int:
    """Raw bytes to fetch of a text part: what ``body.py`` would read of it when ``full``,
    else an estimate of what ``text_cap`` bytes of text take (typical, not the worst case:
    a message whose text comes out short of the cap is fetched again in ``full``)."""
    budget = (RAW_PER_HTML_BYTE if part.ctype == "text/html" else RAW_PER_TEXT_BYTE) * text_cap
    if full:
        return budget
    return min(budget, int(text_cap * _factor(part)) + SLACK_BYTES)


def first_limit(part: Part, text_cap: int) -> int:
    """``text_limit``, tighter for 7-bit and 8-bit plain text whose lines BODYSTRUCTURE
    counts: the CRLF line ends are all its raw bytes add to the text (a line is cut off
    the end, so two lines of slack). A text that still comes out short is fetched on."""
    limit = text_limit(part, text_cap)
    if (
        part.ctype == "text/plain"
        and part.encoding in ("", "7bit", "8bit", "binary")
        and part.lines
        and part.size > 2 * part.lines
        and _factor(part) < 1.1
    ):
        per_line = part.size / part.lines
        tight = int(text_cap * part.size / (part.size - part.lines) + 2 * per_line) + 64
        return min(limit, tight)
    return limit


def text_limits(parts: Sequence[Part], text_cap: int, full: bool) -> list[tuple[Part, int]]:
    """The parts to fetch with their limits. Unless ``full``, a part comes only when the
    parts before it are not expected to fill ``text_cap`` (the text is their text joined),
    and only for what they are expected to leave."""
    if full:
        return [(p, text_limit(p, text_cap, True)) for p in parts]
    out = []
    remaining = text_cap
    for p in parts:
        if remaining <= 0:
            break
        out.append((p, first_limit(p, remaining)))
        remaining -= int(p.size / _factor(p)) if p.size else remaining
    return out


# -- what parse_message reads ----------------------------------------------------------------


def _fields(block: bytes) -> list[bytes]:
    """The header fields of a block, each with its continuation lines."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def cut_partial(payload: bytes, limit: int) -> bytes:
    """A partial payload (``limit`` bytes came back) ends at its last line end: no cut
    base64 quantum, quoted-printable escape or UTF-8 sequence."""
    if len(payload) < limit:
        return payload
    end = payload.rfind(b"\n")
    return payload[: end + 1] if end > 0 else payload


def assemble(headers: bytes, texts: Sequence[tuple[Part, bytes, bytes]]) -> bytes:
    """One message of the fetched header fields and text parts: a single-part message as
    it came, or the header fields with the text parts (each with its MIME header fields)
    as one part, or as a multipart/mixed of them. Line ends become LF, as in the Maildir
    files the same mail is imported from (IMAP sends CRLF; the HTML and quoted-printable
    decoders keep a stray CR as a space)."""
    fields = _fields(headers)
    if len(texts) == 1 and texts[0][0].top:
        raw = b"".join(fields) + b"\n" + texts[0][2]
    else:
        own = b"".join(f for f in fields if _name(f) not in _CONTENT_FIELDS)
        if not texts:
            raw = own + b"\n"
        elif len(texts) == 1:
            _, mime, payload = texts[0]
            raw = own + b"".join(_fields(mime)) + b"\n" + payload
        else:
            boundary = b"=_maildaemon_imap_" + os.urandom(12).hex().encode()
            body = [own, b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\n']
            for _, mime, payload in texts:
                # the line end before a boundary belongs to the boundary, not the payload
                body += [b"--" + boundary + b"\n", b"".join(_fields(mime)), b"\n", payload, b"\n"]
            body.append(b"--" + boundary + b"--\n")
            raw = b"".join(body)
    return raw.replace(b"\r\n", b"\n")


# -- FETCH responses as they come off the wire ----------------------------------------------

# One token of a response line: a parenthesis, a quoted string, a literal's announcement
# at the end of the line, or an atom (``BODY[HEADER.FIELDS (A B)]<0>`` is one atom).
_TOKEN = re.compile(
    rb"[ ]*(?:(\()|(\))|\"((?:[^\"\\]|\\.)*)\"|\{(\d+)\}$|([^ ()\"\[]*(?:\[[^\]]*\](?:<\d+>)?)?))"
)
_QUOTED_PAIR = re.compile(rb"\\(.)")


def _atom(word: bytes) -> Any:
    if word.isdigit():
        return int(word)
    return None if word == b"NIL" else word


def parse_response(pieces: Sequence[bytes]) -> list[Any]:
    """The values of one untagged response, as read off the wire: its lines and the
    literals they announce, alternating (``[line, literal, line, ..., line]``, each line
    without its CRLF). Parenthesized lists become tuples; NIL is None, digits are ints,
    strings and literals bytes (as imapclient gives them, which is not used for FETCH:
    its lexer reads a character at a time). Raises ValueError on what is not IMAP."""
    stack: list[list[Any]] = [[]]
    for i in range(0, len(pieces), 2):
        line = pieces[i]
        pos, end = 0, len(line)
        while pos < end:
            m = _TOKEN.match(line, pos)
            if m is None or m.end() == pos:
                if line[pos:].strip() == b"":
                    break
                raise ValueError(f"unreadable response at {line[pos : pos + 40]!r}")
            pos = m.end()
            opened, closed, quoted, literal, word = m.groups()
            if opened:
                stack.append([])
            elif closed:
                if len(stack) == 1:
                    raise ValueError("unbalanced parenthesis in a response")
                done = tuple(stack.pop())
                stack[-1].append(done)
            elif quoted is not None:
                value = _QUOTED_PAIR.sub(rb"\1", quoted) if b"\\" in quoted else quoted
                stack[-1].append(value)
            elif literal is not None:
                if i + 1 >= len(pieces):
                    raise ValueError("a literal announced but not read")
                stack[-1].append(pieces[i + 1])
            elif word:
                stack[-1].append(_atom(word))
    if len(stack) != 1:
        raise ValueError("unbalanced parenthesis in a response")
    return stack[0]


def body_data(value: Any) -> Any:
    """A BODY or BODYSTRUCTURE value with a multipart's children gathered in a list, as
    imapclient's ``BodyData`` has it (what ``parts_of`` reads)."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        children = []
        rest = len(value)
        for i, item in enumerate(value):
            if not isinstance(item, tuple):
                rest = i
                break
            children.append(body_data(item))
        return ([*children], *value[rest:])
    return value


def internaldate(value: Any) -> datetime | None:
    """An INTERNALDATE (``" 6-Nov-2026 08:53:02 +0000"``) as an aware datetime."""
    m = _INTERNALDATE.fullmatch(value) if isinstance(value, bytes) else None
    if m is None:
        return None
    day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
    offset = timedelta(hours=int(zh), minutes=int(zm))
    try:
        zone = timezone(-offset if sign == b"-" else offset)
        moment = datetime(int(year), _MONTHS.get(month.upper(), 0), int(day), int(hh), int(mm))
        return moment.replace(second=int(ss), tzinfo=zone)
    except ValueError:
        return None


def fetch_items(values: Sequence[Any]) -> tuple[int, dict[bytes, Any]] | None:
    """``(message number, {item: value})`` of a ``* n FETCH (...)`` response (items upper
    case, BODY and BODYSTRUCTURE as ``body_data``), or None for any other response."""
    if len(values) < 3 or not isinstance(values[1], int) or values[2] != b"FETCH":
        return None
    pairs = values[3] if len(values) > 3 and isinstance(values[3], tuple) else ()
    items: dict[bytes, Any] = {}
    for key, value in zip(pairs[::2], pairs[1::2], strict=False):
        if not isinstance(key, bytes):
            continue
        key = key.upper()
        if key in (b"BODY", b"BODYSTRUCTURE"):
            value = body_data(value)
        items[key] = value
    return values[1], items
