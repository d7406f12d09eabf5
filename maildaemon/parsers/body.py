"""The text of a message and the names and sizes of its attachments.

The stdlib parser has already split the message into parts. One bounded walk over them
records the attachments (name, type, size: a base64 payload's size is computed from its
length, never decoded), empties their payloads, cuts the text parts to what ``text_cap``
can use, and hands mail-parser a copy of the message with only its MIME headers:
mail-parser then picks the text parts, decodes their charsets (recovering from unknown or
wrong ones) and reports the defects (``MailParser.text_plain``, ``text_html``,
``defects``). Its cost is in the headers it parses (Received chains, address lists) and
the attachments it re-encodes; it is given neither.

The text is the inline text/plain parts, joined; when there are none, the inline
text/html parts converted to plain text (stdlib ``html.parser``). Line endings become
``\\n``. A message/rfc822 part is an attachment; its own text is not read. Nesting depth
(10), parts (200) and attachments (100) are capped.
"""

from __future__ import annotations

import re
from email.errors import StartBoundaryNotFoundDefect
from email.message import Message as EmailMessage
from email.policy import compat32
from html.parser import HTMLParser

from mailparser.core import MailParser

from maildaemon.model import Attachment
from maildaemon.parsers.elide import ELIDED_MARK, ElidedTextError, elided_bytes, without_elided
from maildaemon.parsers.headers import (
    CHARSET_ALIASES,
    clean_text,
    collapse,
    decode_8bit,
    decode_words,
    resolve_charset,
    unfold,
)

MAX_DEPTH = 10
MAX_PARTS = 200
MAX_ATTACHMENTS = 100
MAX_MIME_FIELD = 2048  # the stdlib's parameter parser is quadratic on long values
MAX_DEFECT_CHARS = 160
# Raw characters of a text part kept per text_cap byte of text: covers base64 (4/3),
# quoted-printable (up to 3) and UTF-16/32 bodies (2-4 bytes a character). HTML is
# mostly markup, and the conversion stops once it has text_cap characters of text.
RAW_PER_TEXT_BYTE = 12
RAW_PER_HTML_BYTE = 32

# The top level keeps what IMAP fetches of it (HEADER_FIELDS), so every path reads the same.
_MIME_FIELDS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]+")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_NEWLINES = re.compile(r"\r\n?")
_HTML_SPACE = re.compile(r"[ \t\r\n\f\u200b\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]*>")


class _HtmlText(HTMLParser):
    """HTML to plain text: no scripts or styles, a line break at every block, entities
    unescaped, blockquotes as ``> `` quotes (so the quoted history can be removed)."""

    _SKIP = frozenset({"script", "style", "head", "template", "title"})
    _BLOCK = frozenset(
        {"p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "pre"}
        | {"hr", "blockquote", "section", "article", "header", "footer", "dd", "dt", "dl"}
        | {"address", "center"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.size = 0
        self._skip = self._quote = self._pre = 0
        self._line_start = True

    def _newline(self) -> None:
        self.out.append("\n")
        self._line_start = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "br" or tag in self._BLOCK:
            self._newline()
            self._quote += tag == "blockquote"
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self._newline()
            self._quote = max(0, self._quote - (tag == "blockquote"))
            self._pre = max(0, self._pre - (tag == "pre"))

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            self._write(_HTML_SPACE.sub(" ", data))
            return
        for i, line in enumerate(data.replace("\r\n", "\n").split("\n")):
            if i:
                self._newline()
            self._write(line)

    def _write(self, text: str) -> None:
        if self._line_start:
            text = text.lstrip()
            if not text:
                return
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


def is_text(ctype: str, disposition: str | None, filename: str | None) -> bool:
    """Whether a part is read as text (else it is an attachment); IMAP decides the same way
    from BODYSTRUCTURE which parts to fetch."""
    return ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename


def describe_part(part: EmailMessage, defects: list[str]) -> tuple[str, str | None, str | None]:
    """Content type, disposition and decoded file name of a part; never raises."""
    ctype = part.get_content_type()
    try:
        disposition = part.get_content_disposition()
        named = part.get_filename()  # None: neither a filename nor a name parameter
        filename = part.get_param("name") if named == "" else named
    except Exception:  # the stdlib parameter parser on hostile input
        defects.append("mime: unreadable content parameters")
        disposition = filename = None
    if isinstance(filename, tuple):  # an undecodable RFC 2231 value
        filename = filename[2]
    if filename:
        text = decode_8bit(unfold(str(filename)), defects, "mime")
        filename = clean_text(collapse(decode_words(text, defects, "mime")))
    if not _MIME_TYPE.fullmatch(ctype):
        defects.append(f"mime: malformed content type {ctype[:40]!r}")
        ctype = "application/octet-stream"
    return ctype, disposition, filename or None


def _text_payload(part: EmailMessage, cte: str, limit: int) -> tuple[str, str]:
    """A text part's payload for mail-parser, at most ``limit`` characters, and its new
    transfer encoding. ``get_payload()`` would decode 8-bit bytes with the part's charset
    (losing what mail-parser recovers), so the stdlib decodes quoted-printable and the
    rest to bytes, handed over as "binary" (mail-parser takes ASCII-only 7bit text as it
    is, and ISO-2022-JP would stay encoded). Base64 is trimmed to what the stdlib can
    decode (it returns the encoded text when it cannot): the lines before a blank line
    (a list footer may follow), without junk or a cut-off last character."""
    if cte == "base64":
        data = _BLANK_LINE.split(str(part.get_payload()).lstrip(), maxsplit=1)[0]
        data = _no_elided(_cut(data, limit))
        data = _NOT_BASE64.sub("", data)
        return data[: len(data) - 1] if len(data) % 4 == 1 else data, cte
    data = part.get_payload(decode=True)
    text = data.decode("ascii", "surrogateescape") if isinstance(data, bytes) else ""
    return _no_elided(_cut(text, limit)), "binary"


def _no_elided(text: str) -> str:
    """``text``, which is to be read; raises when bytes were elided from it (elide.py)."""
    if ELIDED_MARK in text:
        raise ElidedTextError
    return text


def _payload_size(part: EmailMessage, cte: str) -> int:
    """Bytes of a payload after transfer decoding; base64 is counted, not decoded. Runs
    elided before the parse (elide.py) are counted from their placeholders."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822: the size of the message, flattened
        try:
            flat = [m.as_bytes() for m in payload if isinstance(m, EmailMessage)]
        except Exception:  # the stdlib generator on a hostile message
            return 0
        return sum(len(data) + elided_bytes(data, flattened=True) for data in flat)
    if cte == "base64" and isinstance(payload, str):
        payload, elided = without_elided(payload)
        chars = len(payload) - sum(payload.count(blank) for blank in "\r\n \t") + elided
        tail = payload[-8:].rstrip()
        return max(0, (chars - (len(tail) - len(tail.rstrip("=")))) * 3 // 4)
    data = part.get_payload(decode=True)
    return len(data) + elided_bytes(data) if isinstance(data, bytes) else 0


def _cut(payload: str, limit: int) -> str:
    """At most ``limit`` characters of a raw payload, cut at a line end when there is one."""
    if len(payload) <= limit:
        return payload
    end = payload.rfind("\n", 0, limit)
    return payload[: end + 1 if end > 0 else limit]


class _Walk:
    """Depth-first over the parts: attachments out, text parts cut, caps applied."""

    def __init__(self, text_cap: int, defects: list[str]) -> None:
        self.defects = defects
        self.attachments: list[Attachment] = []
        self.budget = {"text/plain": RAW_PER_TEXT_BYTE * text_cap}
        self.budget["text/html"] = RAW_PER_HTML_BYTE * text_cap
        self.parts = 1

    def multipart(self, part: EmailMessage, children: list[EmailMessage | str], depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.defects.append(f"mime: nested deeper than {MAX_DEPTH}, the rest ignored")
            part.set_payload("")
            return
        room = max(MAX_PARTS - self.parts, 0)
        if len(children) > room:
            self.defects.append(f"mime: more than {MAX_PARTS} parts, the rest ignored")
            children = children[:room]
            part.set_payload(children)
        self.parts += len(children)
        for child in children:
            if isinstance(child, EmailMessage):
                self.part(child, depth + 1)

    def part(self, part: EmailMessage, depth: int, source: EmailMessage | None = None) -> None:
        """Walk ``part``; the payload of a leaf is read from ``source`` when given."""
        for name, value in part.raw_items():
            if len(value) > MAX_MIME_FIELD and name.lower().startswith("content-"):
                part.replace_header(name, value[:MAX_MIME_FIELD])
        source = part if source is None else source
        if part.get_content_maintype() == "multipart":
            children = source.get_payload()
            if isinstance(children, list):
                part.set_payload(children)
                self.multipart(part, children, depth)
                return
            part.set_type("text/plain")  # no boundary, or none found: read as text
            kept = [d for d in part.defects if not isinstance(d, StartBoundaryNotFoundDefect)]
            if len(kept) < len(part.defects):  # reported here: mail-parser would look for
                part.defects = kept  # the parts in the epilogue, and raise where there is none
                self.defects.append("mime: start boundary not found, body read as text")
        ctype, disposition, filename = describe_part(part, self.defects)
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if is_text(ctype, disposition, filename):
            text, cte = _text_payload(source, cte, self.budget[ctype])
            self.budget[ctype] -= len(text)
            part.set_payload(text)
            del part["content-transfer-encoding"]
            part["Content-Transfer-Encoding"] = cte
            label = part.get_content_charset()
            if label in CHARSET_ALIASES:  # a label Python reads too narrowly, or not at all
                part.set_param("charset", resolve_charset(label) or "utf-8")
            return
        if len(self.attachments) < MAX_ATTACHMENTS:
            size = _payload_size(source, cte)
            self.attachments.append(Attachment(filename or "", ctype, size))
        elif len(self.attachments) == MAX_ATTACHMENTS:
            self.defects.append(f"mime: more than {MAX_ATTACHMENTS} attachments, the rest ignored")
        part.set_payload("")


class _TextParser(MailParser):  # type: ignore[misc]
    """mail-parser without the last step of its ``parse``: building the ``mail`` and
    ``mail_partial`` dicts, two passes over every header field and computed part (which
    only read, and which nothing here uses: only ``text_plain``, ``text_html`` and
    ``defects``). A quarter of mail-parser's time on list mail."""

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return {}


def _mime_only(message: EmailMessage) -> EmailMessage:
    """An empty message with the MIME header fields of ``message``, for mail-parser."""
    copy = EmailMessage(policy=compat32)
    for name, value in message.raw_items():
        if name.lower() in _MIME_FIELDS:
            copy.set_raw(name, value)
    copy.preamble, copy.epilogue = message.preamble, message.epilogue
    copy.defects = message.defects
    return copy


def extract_body(
    message: EmailMessage, text_cap: int, defects: list[str]
) -> tuple[str, tuple[Attachment, ...]]:
    """The text (not yet capped) and the attachments of a parsed message, whose parts
    this changes: attachment payloads are emptied and text payloads cut. Raises
    ``ElidedTextError`` when text would be read from a run elided before the parse."""
    walk = _Walk(text_cap, defects)
    try:
        _no_elided(str(message.epilogue or ""))
        mime = _mime_only(message)
        walk.part(mime, 0, message)
        parsed = _TextParser(mime)
    except ElidedTextError:
        raise
    except Exception as e:  # mail-parser and the stdlib on hostile input; never raise
        defects.append(f"mime: unreadable structure ({type(e).__name__}), text not read")
        return "", tuple(walk.attachments)
    for found in parsed.defects:
        for items in found.values():
            for item in items:
                item = item.removesuffix(" Original bytes remain in the MIME part.")
                defects.append(f"mime: {clean_text(item)[:MAX_DEFECT_CHARS]}")
    plain = [text for text in parsed.text_plain if text.strip()]
    if plain:
        text = "\n".join(plain)
    else:
        html = "\n".join(text for text in parsed.text_html if text.strip())
        text = html_to_text(html, text_cap, defects) if html else ""
    return clean_text(_NEWLINES.sub("\n", text)), tuple(walk.attachments)
