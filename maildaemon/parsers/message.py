"""Raw bytes of one email -> a frozen ``Message`` (SPEC 4, 5 and 11).

One stdlib parse (``BytesParser`` with the compat32 policy) gives the header fields and the
MIME structure. Only the fields the rules read (``HEADER_FIELDS``) are read, so a message
parsed from a file and the same message parsed from IMAP's ``BODY.PEEK[HEADER.FIELDS
(...)]`` subset see the same headers. The body goes to ``body.py`` (mail-parser for the
text, charsets and defects) and the text to ``reply.py`` (mail-parser-reply). What stays
here is the leniency the stdlib lacks: ids without brackets, 8-bit and broken encoded
words, absurd dates, odd address lists.

``parse_message`` returns a ``Message`` for anything that starts with a header field,
however broken (the problems are listed in ``Message.defects``), and raises ``ParseError``
only for hopeless input: empty bytes, or bytes that do not start with a header field.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser, Parser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from maildaemon.errors import ParseError
from maildaemon.model import Address, Message
from maildaemon.parsers.body import RAW_PER_HTML_BYTE, RAW_PER_TEXT_BYTE, extract_body
from maildaemon.parsers.elide import ElidedTextError, elide_base64
from maildaemon.parsers.headers import collapse, decode_8bit, decode_words, unfold
from maildaemon.parsers.ids import parse_ids
from maildaemon.parsers.reply import reply_text
from maildaemon.parsers.subject import base_subject, is_forward, normalize_subject
from maildaemon.parsers.threadindex import conversation_id

# The header fields the rules read; IMAP fetches exactly these.
HEADER_FIELDS = (
    "Message-ID",
    "In-Reply-To",
    "References",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Date",
    "Subject",
    "Thread-Index",
    "Thread-Topic",
    "Auto-Submitted",
    "X-Autoreply",
    "X-Autorespond",
    "Precedence",
    "List-Id",
    "List-Post",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
)
_WANTED = frozenset(name.lower() for name in HEADER_FIELDS)

SYNTHETIC_DOMAIN = "synthetic.maildaemon.invalid"
SYNTHETIC_TEXT_BYTES = 1024
MAX_DEFECTS = 20
MAX_ADDRESSES = 500  # per address header
MAX_ADDRESS_CHARS = 65536  # of one address header; a 135 KB To: is cut here
MAX_SUBJECT_CHARS = 2000
MIN_YEAR = 1980
MAX_DATE_AHEAD = timedelta(days=2)

_BOM = b"\xef\xbb\xbf"
_FROM_FIELD = re.compile(rb"From[ \t]+:")
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what bytes.strip() keeps
_ANGLE = re.compile(r"<([^<>]*)>")
# The common shapes of an address list item, for a fast path past the stdlib's
# character-by-character parser: ``a@b``, ``Name <a@b>``, ``"Name, Q." <a@b>``, each
# followed by a comma or the end. Anything else (groups, comments, routes, quoted local
# parts) goes to ``email.utils.getaddresses``.
_ADDR_SPEC = r"[^<>\s\"(),;:@\[\]\\]+@[^<>\s\"(),;:@\[\]\\]+"
_ADDR_ITEM = re.compile(
    r"[\s,]*(?:"
    rf"(?:\"((?:[^\"\\]|\\.)*)\"|([^\"\\(),;:<>@\[\]]*?))\s*<\s*({_ADDR_SPEC})\s*>"
    rf"|({_ADDR_SPEC})"
    r")\s*(?:,|\Z)"
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_TOKEN_END = re.compile(r"[\s;(]")
# How the stdlib feedparser splits lines, and the lines it reads as the header block: each
# starts as ``email.feedparser.headerRE`` says (a field, a continuation or "From ").
_LINE_END = re.compile(r"\r\n|\r|\n")
_HEADER_START = r"From |[\041-\071\073-\176]*+:|[\t ]"
_HEADER_LINE = re.compile(_HEADER_START)
_NOT_HEADER_LINE = re.compile(rf"\n(?!{_HEADER_START})")  # for text whose lines end with LF
_HEADER_LINES = re.compile(rf"(?:(?:{_HEADER_START})[^\r\n]*+(?:\r\n|\r|\n))*+")


def _is_envelope(raw: bytes, pos: int) -> bool:
    """An mbox ``From sender date`` line at ``pos`` (not a ``From :`` header field)."""
    return raw.startswith(b"From ", pos) and _FROM_FIELD.match(raw, pos) is None


def strip_from_line(raw: bytes) -> bytes:
    """``raw`` without a leading mbox ``From `` envelope line (after a UTF-8 BOM, if any)."""
    start = len(_BOM) if raw.startswith(_BOM) else 0
    if _is_envelope(raw, start):
        nl = raw.find(b"\n", start)
        return b"" if nl < 0 else raw[nl + 1 :]
    return raw


def cap_utf8(text: str, cap: int) -> str:
    """``text`` cut to at most ``cap`` bytes of UTF-8, on a character boundary."""
    if len(text) * 4 <= cap:
        return text
    text = text[: max(cap, 0)]
    data = text.encode("utf-8")
    if len(data) <= cap:
        return text
    return data[:cap].decode("utf-8", "ignore")


def _short(value: str, n: int = 60) -> str:
    value = collapse(value)
    return repr(value if len(value) <= n else value[:n] + "...")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_date(value: str | None, received: datetime, defects: list[str]) -> datetime | None:
    if value is None or not value.strip():
        defects.append("date: missing")
        return None
    text = collapse(unfold(decode_8bit(value, None, "date")))
    try:
        parsed = parsedate_to_datetime(text)
        moment = _as_utc(parsed)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"date: unparseable {_short(text)}")
        return None
    if moment.year < MIN_YEAR or moment > received + MAX_DATE_AHEAD:
        defects.append(f"date: absurd {_short(text)}")
        return None
    return moment


def _split_addresses(text: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs of a plain address list, or None when it needs the full parser."""
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    match = _ADDR_ITEM.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            return None if text[pos:].strip(" \t,") else pairs
        quoted, plain, angle, bare = m.groups()
        if bare is not None:
            pairs.append(("", bare))
        elif quoted is not None:
            pairs.append((_QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted, angle))
        else:
            pairs.append((plain or "", angle))
        pos = m.end()
    return pairs


def _addresses(value: str | None, where: str, defects: list[str]) -> tuple[Address, ...]:
    if not value:
        return ()
    text = unfold(decode_8bit(value, defects, where))
    if len(text) > MAX_ADDRESS_CHARS:
        defects.append(f"{where}: header longer than {MAX_ADDRESS_CHARS} characters, cut")
        text = text[:MAX_ADDRESS_CHARS]
    pairs = _split_addresses(text)
    if pairs is None:
        try:
            pairs = getaddresses([text])
        except Exception:  # the stdlib address parser on hostile input
            defects.append(f"{where}: unreadable address list {_short(text)}")
            return ()
    out: list[Address] = []
    seen: set[str] = set()
    for name, addr in pairs:
        email = addr.strip().lower()
        local, at, domain = email.rpartition("@")
        if not at or not local or not domain:
            if email or name.strip():
                defects.append(f"{where}: dropped address without '@' {_short(addr or name, 40)}")
            continue
        if email in seen:
            continue
        seen.add(email)
        display = collapse(decode_words(name, defects, where)) if name else ""
        out.append(Address(name="" if display.lower() == email else display, email=email))
        if len(out) >= MAX_ADDRESSES:
            defects.append(f"{where}: more than {MAX_ADDRESSES} addresses, the rest dropped")
            break
    return tuple(out)


def _token(value: str | None) -> str | None:
    """The first token of a header value, lower-cased: ``auto-replied; x=y`` -> ``auto-replied``."""
    if value is None:
        return None
    text = collapse(unfold(decode_8bit(value, None, "header"))).lower()
    token = _TOKEN_END.split(text, 1)[0] if text else ""
    return token or None


def _list_id(value: str | None) -> str | None:
    if value is None:
        return None
    text = collapse(unfold(decode_8bit(value, None, "list-id")))
    m = _ANGLE.search(text)
    found = collapse(m.group(1)) if m else text
    return found.lower() or None


def _synthetic_id(fields: dict[str, str], text: str) -> str:
    """An id derived only from what every ingest path sees (SPEC 4): the unfolded and
    stripped raw values of From, To, Date and Subject, and the first KB of the text."""
    digest = hashlib.sha256()
    for name in ("from", "to", "date", "subject"):
        value = unfold(fields.get(name, "")).strip()
        digest.update(value.encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
    digest.update(text.encode("utf-8")[:SYNTHETIC_TEXT_BYTES])
    return f"<{digest.hexdigest()[:32]}@{SYNTHETIC_DOMAIN}>"


def _finish_defects(defects: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(defects))
    if len(unique) > MAX_DEFECTS:
        more = len(unique) - (MAX_DEFECTS - 1)
        unique = [*unique[: MAX_DEFECTS - 1], f"(+{more} more defects)"]
    return tuple(unique)


def _header_end(text: str) -> tuple[int, int] | None:
    """Where the stdlib parser ends the header block of ``text``: the end of the line that
    ends it (a blank line, or the first line that is not a header field, which is then
    the first line of the body) and where the body starts. None when no such line ends
    (the header block runs to the end), or when a line after the first starts with
    ``From `` (the parser puts such a line back into the body when it is the last)."""
    pos = 0  # the start of the first line that is not a header line
    if _HEADER_LINE.match(text) is not None:
        after = _NOT_HEADER_LINE.search(text)
        if after is None:
            return None
        pos = after.end()
        if text.find("\r", 0, pos) >= 0:  # lines may end with CR too: split them all three ways
            block = _HEADER_LINES.match(text)
            pos = block.end() if block else 0
    end = _LINE_END.search(text, pos)
    if end is None or text.find("\nFrom ", 0, pos) >= 0 or text.find("\rFrom ", 0, pos) >= 0:
        return None  # a "From " line after the first may be given back to the body
    return end.end(), (end.end() if end.start() == pos else pos)


def _parse(data: bytes, defects: list[str]) -> EmailMessage:
    """The stdlib parse (``BytesParser(policy=compat32).parsebytes``); a structure nested
    too deep for it gives the headers alone.

    The stdlib parser reads the body line by line, and for a message that is not multipart
    (or message/*) it only joins those lines into the payload: then the header block is
    parsed alone (up to the line that ends it, so the same defects are found) and the rest
    of the text is set as the payload, as the parser would have set it."""
    text = data.decode("ascii", "surrogateescape")  # as BytesParser.parsebytes does
    try:
        split = _header_end(text)
        if split is not None and split[0] < len(text):
            head = Parser(policy=compat32).parsestr(text[: split[0]])
            if head.get_content_maintype() not in ("multipart", "message"):
                head.set_payload(text[split[1] :])
                return head
        return Parser(policy=compat32).parsestr(text)
    except RecursionError:
        defects.append("mime: nested too deep to parse, body not read")
        headers = BytesHeaderParser(policy=compat32).parsebytes(data)
        headers.set_payload("")
        return headers


def parse_message(raw: bytes, *, received_at: datetime, text_cap: int = 16384) -> Message:
    """Parse one email. Raises ``ParseError`` only when ``raw`` has no header block at all."""
    raw = bytes(raw)
    try:
        return _parse_message(raw, received_at, text_cap, elide=True)
    except ElidedTextError:  # text would be read from an elided run: parse it all
        return _parse_message(raw, received_at, text_cap, elide=False)


def _parse_message(raw: bytes, received_at: datetime, text_cap: int, *, elide: bool) -> Message:
    received = _as_utc(received_at)
    defects: list[str] = []
    start = 0
    if raw.startswith(_BOM):
        start = len(_BOM)
        defects.append("headers: byte order mark before the first header")
    if _is_envelope(raw, start):
        nl = raw.find(b"\n", start)
        start = len(raw) if nl < 0 else nl + 1
    first = start
    while start < len(raw) and raw[start] in (10, 13):
        start += 1
    if start > first:
        defects.append("headers: blank lines before the first header")
    if _NOT_BLANK.search(raw, start) is None:
        raise ParseError("empty message: no bytes besides blanks")
    # long base64 runs out before the parse (elide.py); text parts keep what body.py reads
    keep = max(RAW_PER_TEXT_BYTE, RAW_PER_HTML_BYTE) * text_cap
    data = elide_base64(raw, start, keep) if elide else raw[start:]
    if field := _FROM_FIELD.match(data):  # "From :", which the stdlib takes for an envelope
        data = b"From:" + data[field.end() :]
    parsed = _parse(data, defects)
    if not parsed.keys():
        raise ParseError("no header block: the message does not start with a header field")
    fields: dict[str, str] = {}
    for name, value in parsed.raw_items():
        if name.lower() in _WANTED:
            fields.setdefault(name.lower(), value.replace("\x00", "") if "\x00" in value else value)

    def decoded(name: str) -> str:
        value = fields.get(name)
        if value is None:
            return ""
        return collapse(unfold(decode_8bit(value, defects, name)))

    subject = collapse(decode_words(decoded("subject"), defects, "subject"))
    if len(subject) > MAX_SUBJECT_CHARS:
        defects.append(f"subject: longer than {MAX_SUBJECT_CHARS} characters, cut")
        subject = subject[:MAX_SUBJECT_CHARS]

    date = _parse_date(fields.get("date"), received, defects)

    text, attachments = extract_body(parsed, text_cap, defects)
    text = cap_utf8(text.strip(), text_cap)

    own = parse_ids(decoded("message-id"), limit=1)
    if own:
        message_id, synthetic = own[0], False
    else:
        message_id, synthetic = _synthetic_id(fields, text), True
        if "message-id" in fields:
            defects.append(f"message-id: unusable {_short(decoded('message-id'))}, synthetic id")
        else:
            defects.append("message-id: missing, synthetic id")

    in_reply_to = parse_ids(decoded("in-reply-to"))
    references = parse_ids(decoded("references"))
    if message_id in in_reply_to or message_id in references:
        defects.append("references: the message refers to itself")
        in_reply_to = tuple(i for i in in_reply_to if i != message_id)
        references = tuple(r for r in references if r != message_id)

    from_ = _addresses(fields.get("from"), "from", defects)
    autoreply = any(
        decoded(name).lower() not in ("", "no") for name in ("x-autoreply", "x-autorespond")
    )

    return Message(
        message_id=message_id,
        synthetic_id=synthetic,
        in_reply_to=in_reply_to,
        references=references,
        from_=from_[0] if from_ else None,
        to=_addresses(fields.get("to"), "to", defects),
        cc=_addresses(fields.get("cc"), "cc", defects),
        reply_to=_addresses(fields.get("reply-to"), "reply-to", defects),
        date=received if date is None else date,
        date_is_fallback=date is None,
        subject=subject,
        base_subject=base_subject(subject),
        normalized_subject=normalize_subject(subject),
        is_forward=is_forward(subject),
        thread_index=conversation_id(fields.get("thread-index")),
        auto_submitted=_token(fields.get("auto-submitted")),
        precedence=_token(fields.get("precedence")),
        x_autoreply=autoreply,
        list_id=_list_id(fields.get("list-id")),
        text=text,
        reply_text=reply_text(text),
        attachments=attachments,
        defects=_finish_defects(defects),
        size=len(raw),
    )
