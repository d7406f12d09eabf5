"""The MIME walk: the text of a message and the names and sizes of its attachments.

The walk works on offsets into the raw bytes and never copies or decodes an attachment:
the multipart boundaries are found with ``bytes.find``, each part's Content-* fields go
into a stdlib compat32 ``Message`` (whose parameter parsing reads RFC 2231 names), text
parts are decoded from a bounded prefix only, and an attachment's size is the length of
its decoded payload (quoted-printable up to 1 MB) or computed from its base64 length. A
20 MB attachment costs a few scans (~50 ms) and no memory, not a decode and a re-encode.
Nesting depth (10), parts (200) and attachments (100) are capped.

The text is the inline text/plain parts, joined; when there are none, the inline
text/html parts converted to plain text (stdlib ``html.parser``). Line endings become
``\\n``. A message/rfc822 part is an attachment; its own text is not read.
"""

from __future__ import annotations

import binascii
import re
from email.message import Message as EmailMessage
from html.parser import HTMLParser
from itertools import pairwise

from maildaemon.model import Attachment
from maildaemon.parsers.headers import (
    clean_text,
    collapse,
    decode_8bit,
    decode_bytes,
    decode_words,
    split_header_block,
    unfold,
)

MAX_DEPTH = 10
MAX_PARTS = 200
MAX_ATTACHMENTS = 100
# Raw bytes of a text part read per text_cap byte of text: covers base64 (4/3),
# quoted-printable (up to 3) and UTF-16/32 bodies (2-4 bytes a character).
RAW_PER_TEXT_BYTE = 12
# HTML is mostly markup: read up to this many raw bytes per text_cap byte; the
# conversion stops as soon as it has text_cap characters of text.
RAW_PER_HTML_BYTE = 32
_QP_EXACT_LIMIT = 1 << 20

_PART_FIELDS = frozenset({b"content-type", b"content-disposition", b"content-transfer-encoding"})
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]+")
_NEWLINES = re.compile(r"\r\n?")
_HTML_SPACE = re.compile(r"[ \t\r\n\f\u200b\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]*>")


def b64decode_lenient(data: bytes) -> bytes:
    """Decode base64, ignoring junk characters, stray padding and a cut-off last quantum."""
    data = _B64_JUNK.sub(b"", data)
    if len(data) % 4 == 1:
        data = data[:-1]
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        return b""


def _header_str(msg: EmailMessage, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name:
            return collapse(unfold(decode_8bit(value, None, "mime")))
    return ""


def _params_safe(msg: EmailMessage, defects: list[str]) -> tuple[str, str | None, str | None]:
    """Content type, disposition and decoded filename of a part; never raises."""
    ctype = msg.get_content_type()
    try:
        disposition = msg.get_content_disposition()
    except Exception:  # the stdlib param parser on hostile input
        disposition = None
    try:
        filename = msg.get_filename() or msg.get_param("name")
    except Exception:
        defects.append("mime: unreadable attachment name")
        filename = None
    if isinstance(filename, tuple):  # an undecodable RFC 2231 value
        filename = filename[2]
    if filename:
        text = decode_words(decode_8bit(unfold(str(filename)), defects, "mime"), defects, "mime")
        filename = clean_text(collapse(text))
    if not _MIME_TYPE.fullmatch(ctype):
        defects.append(f"mime: malformed content type {ctype[:40]!r}")
        ctype = "application/octet-stream"
    return ctype, disposition, filename or None


def _charset(msg: EmailMessage) -> str | None:
    try:
        charset = msg.get_content_charset()
    except Exception:
        return None
    return charset if isinstance(charset, str) and charset else None


class _HtmlText(HTMLParser):
    """HTML to plain text: no scripts or styles, a line break at every block, entities
    unescaped, blockquotes as ``> `` quotes (so the quoted history can be removed)."""

    _SKIP = frozenset({"script", "style", "head", "template", "title"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "tr",
            "li",
            "ul",
            "ol",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "hr",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
            "dd",
            "dt",
            "dl",
            "address",
            "center",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.size = 0
        self._skip = 0
        self._quote = 0
        self._pre = 0
        self._line_start = True

    def _newline(self) -> None:
        self.out.append("\n")
        self._line_start = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "br":
            self._newline()
        elif tag in self._BLOCK:
            self._newline()
            if tag == "blockquote":
                self._quote += 1
            elif tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self._newline()
            if tag == "blockquote":
                self._quote = max(0, self._quote - 1)
            elif tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            lines = data.replace("\r\n", "\n").split("\n")
            for i, line in enumerate(lines):
                if i:
                    self._newline()
                self._write(line)
            return
        self._write(_HTML_SPACE.sub(" ", data))

    def _write(self, text: str) -> None:
        if self._line_start:
            text = text.lstrip()
            if not text:
                return
            if self._quote:
                text = "> " * self._quote + text
        self.out.append(text)
        self.size += len(text)
        self._line_start = False

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.out).split("\n")]
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_text(html: str, limit: int, defects: list[str]) -> str:
    """Plain text of an HTML body; stops reading once it has ``limit`` characters of text."""
    parser = _HtmlText()
    try:
        for i in range(0, len(html), 16384):
            parser.feed(html[i : i + 16384])
            if parser.size >= limit:
                break
        parser.close()
        return parser.text()
    except Exception:  # html.parser asserts on some malformed markup
        defects.append("html: unparseable markup, tags stripped")
        return collapse(_TAGS.sub(" ", html))


class _Walker:
    def __init__(self, raw: bytes, text_cap: int, defects: list[str]) -> None:
        self.raw = raw
        self.text_cap = text_cap
        self.defects = defects
        self.plain: list[str] = []
        self.html: list[str] = []
        self.text_chars = 0
        self.attachments: list[Attachment] = []
        self.parts = 0

    def entity(self, headers: EmailMessage, start: int, end: int, depth: int) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            if self.parts == MAX_PARTS + 1:
                self.defects.append(f"mime: more than {MAX_PARTS} parts, the rest ignored")
            return
        ctype = headers.get_content_type()
        if ctype.startswith("multipart/"):
            boundary = None
            try:
                boundary = headers.get_boundary()
            except Exception:
                boundary = None
            if not boundary:
                self.defects.append("mime: multipart without boundary, read as text")
            elif depth >= MAX_DEPTH:
                self.defects.append(f"mime: nested deeper than {MAX_DEPTH}, the rest ignored")
                return
            else:
                child_type = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
                if self.multipart(boundary, start, end, depth, child_type):
                    return
            self.leaf(headers, "text/plain", None, None, start, end)
            return
        ctype, disposition, filename = _params_safe(headers, self.defects)
        self.leaf(headers, ctype, disposition, filename, start, end)

    def multipart(self, boundary: str, start: int, end: int, depth: int, child_type: str) -> bool:
        """Walk the parts between the delimiter lines; False when there is none at all."""
        raw = self.raw
        dash = b"--" + boundary.encode("utf-8", "surrogateescape")
        delimiters: list[tuple[int, int, bool]] = []  # (part end, next part start, closing)
        mstart = start if raw.startswith(dash, start) else -1
        search = start
        while True:
            if mstart < 0:
                i = raw.find(b"\n" + dash, search, end)
                if i < 0:
                    break
                mstart = i + 1
            after = mstart + len(dash)
            nl = raw.find(b"\n", after, end)
            line_end = end if nl < 0 else nl
            rest = raw[after:line_end]
            closing = rest.startswith(b"--")
            if (rest[2:] if closing else rest).strip(b" \t\r"):
                search = after  # "--boundary" and more text on the line: not a delimiter
            else:
                # the line break before a delimiter line belongs to the delimiter
                part_end = mstart - 1 if mstart > start else start
                if part_end > start and raw[part_end - 1] == 13:
                    part_end -= 1
                delimiters.append((part_end, min(line_end + 1, end), closing))
                if closing:
                    break
                search = line_end
            mstart = -1
        if not delimiters:
            self.defects.append("mime: start boundary not found, body read as text")
            return False
        if not delimiters[-1][2]:
            self.defects.append("mime: closing boundary missing")
            delimiters.append((end, end, True))
        for (_, part_start, _), (part_end, _, _) in pairwise(delimiters):
            part_start = min(part_start, end)
            block = split_header_block(raw, part_start, part_end, self.defects, "mime")
            headers = block.message(raw, _PART_FIELDS, child_type)
            self.entity(headers, block.body_start, max(part_end, block.body_start), depth + 1)
        return True

    def leaf(
        self,
        headers: EmailMessage,
        ctype: str,
        disposition: str | None,
        filename: str | None,
        start: int,
        end: int,
    ) -> None:
        cte = _header_str(headers, "content-transfer-encoding").lower()
        is_text = ctype in ("text/plain", "text/html")
        if is_text and disposition != "attachment" and not filename:
            plain = ctype == "text/plain"
            if self.text_chars < self.text_cap:  # enough text already: skip the rest
                limit = (RAW_PER_TEXT_BYTE if plain else RAW_PER_HTML_BYTE) * self.text_cap
                text = self.decode_text(headers, cte, start, end, limit)
                if text.strip():
                    (self.plain if plain else self.html).append(text)
                    self.text_chars += len(text) if plain else 0
            return
        if len(self.attachments) >= MAX_ATTACHMENTS:
            self.defects.append(f"mime: more than {MAX_ATTACHMENTS} attachments, the rest ignored")
            return
        size = self.payload_size(cte, start, end)
        self.attachments.append(Attachment(filename or "", ctype, size))

    def decode_text(self, headers: EmailMessage, cte: str, start: int, end: int, limit: int) -> str:
        """The text of a part, from at most ``limit`` of its raw bytes."""
        cut = end - start > limit
        data = self.raw[start : start + limit] if cut else self.raw[start:end]
        if cte == "base64":
            data = b64decode_lenient(data)
        elif cte == "quoted-printable":
            data = binascii.a2b_qp(data)
        text = decode_bytes(data, _charset(headers), self.defects, "body", final=not cut)
        if "\r" in text:
            text = _NEWLINES.sub("\n", text)
        return text

    def payload_size(self, cte: str, start: int, end: int) -> int:
        raw = self.raw
        if cte == "base64":
            chars = end - start
            for blank in (b"\n", b"\r", b" ", b"\t"):
                chars -= raw.count(blank, start, end)
            tail = raw[max(start, end - 8) : end].rstrip()
            pad = len(tail) - len(tail.rstrip(b"="))
            return max(0, (chars - pad) * 3 // 4)
        if cte == "quoted-printable" and end - start <= _QP_EXACT_LIMIT:
            return len(binascii.a2b_qp(raw[start:end]))
        return max(0, end - start)


def extract_body(
    raw: bytes, headers: EmailMessage, body_start: int, text_cap: int, defects: list[str]
) -> tuple[str, tuple[Attachment, ...]]:
    """The text (not yet capped) and the attachments of a message whose body starts at
    ``body_start`` in ``raw``; ``headers`` holds at least its Content-* fields."""
    walker = _Walker(raw, text_cap, defects)
    walker.entity(headers, body_start, len(raw), 0)
    if walker.plain:
        text = "\n".join(walker.plain)
    elif walker.html:
        text = html_to_text("\n".join(walker.html), text_cap, defects)
    else:
        text = ""
    return text, tuple(walker.attachments)
