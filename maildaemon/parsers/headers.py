"""Header-level helpers: the header block split, charsets and RFC 2047 encoded words.

Everything here is lenient: mail is hostile input, so nothing raises on bad bytes. Problems
are appended as short strings to a ``defects`` list when the caller passes one.
"""

from __future__ import annotations

import binascii
import codecs
import re
from email.message import Message as EmailMessage
from email.policy import compat32
from functools import lru_cache

# Content-* fields longer than this are cut before the stdlib reads their parameters
# (a real one, even with an RFC 2231 file name, is a few hundred bytes).
MAX_MIME_FIELD = 2048

# A header field line and its continuation lines, as the stdlib feedparser reads them
# (its headerRE): a name of printable ASCII other than ":", optional blanks, a colon.
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:[^\n]*\n?(?:[ \t][^\n]*\n?)*")

# RFC 2047 encoded word. The encoded text may (illegally) contain blanks, never a "?"
# (which also keeps the scan linear on hostile input).
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_WS = re.compile(r"\s+")

# Charset labels mail programs write that Python does not know, or knows by a narrower
# codec than the one the bytes really are in.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "x-sjis": "shift_jis",
    "ks_c_5601": "euc_kr",
    "ascii": "utf-8",  # declared ASCII that carries 8-bit bytes is nearly always UTF-8
    "us-ascii": "utf-8",
    "ansi_x3.4-1968": "utf-8",
    "646": "utf-8",
}


class HeaderBlock:
    """The result of splitting a message (or a MIME part) into header fields and body."""

    __slots__ = ("body_start", "fields")

    def __init__(self, fields: list[tuple[bytes, int, int]], body_start: int) -> None:
        self.fields = fields  # (lower-cased name, start, end) of each field, in order
        self.body_start = body_start  # offset of the first body byte (may equal the end)

    def select(self, data: bytes, wanted: frozenset[bytes]) -> bytes:
        """The raw bytes of just the fields named in ``wanted`` (lower-case names)."""
        return b"".join(data[s:e] for name, s, e in self.fields if name in wanted)

    def message(
        self, data: bytes, wanted: frozenset[bytes], default_type: str = "text/plain"
    ) -> EmailMessage:
        """A stdlib compat32 message holding the fields named in ``wanted``, read as the
        stdlib bytes parser reads them (8-bit bytes kept as surrogate escapes, values by
        ``compat32.header_source_parse``), without the cost of its line-by-line feed."""
        msg = EmailMessage(policy=compat32)
        if default_type != "text/plain":
            msg.set_default_type(default_type)
        for name, s, e in self.fields:
            if name in wanted:
                if name.startswith(b"content-") and e - s > MAX_MIME_FIELD:
                    e = s + MAX_MIME_FIELD  # the stdlib's parameter parser is slow on long values
                lines = data[s:e].decode("ascii", "surrogateescape").splitlines(keepends=True)
                key, value = compat32.header_source_parse(lines)
                msg.set_raw(key.rstrip(" \t"), value)
        return msg


def split_header_block(
    data: bytes, start: int, end: int, defects: list[str] | None, where: str
) -> HeaderBlock:
    """Read the header fields of ``data[start:end]``, as the stdlib feedparser does.

    The header block ends at the first empty line, or at the first line that is neither
    a field nor a continuation (that line then starts the body, and a defect is noted).
    A misplaced mbox ``From `` line among the headers is skipped.
    """
    fields: list[tuple[bytes, int, int]] = []
    pos = start
    match = _FIELD.match
    while pos < end:
        m = match(data, pos, end)
        if m is not None:
            fields.append((m.group(1).lower(), pos, m.end()))
            pos = m.end()
            continue
        if data.startswith(b"\n", pos):
            return HeaderBlock(fields, pos + 1)
        if data.startswith(b"\r\n", pos):
            return HeaderBlock(fields, pos + 2)
        if data.startswith(b"From ", pos):
            nl = data.find(b"\n", pos, end)
            pos = end if nl < 0 else nl + 1
            if defects is not None:
                defects.append(f"{where}: misplaced 'From ' line among headers")
            continue
        if defects is not None:
            defects.append(f"{where}: no blank line between headers and body")
        return HeaderBlock(fields, pos)
    return HeaderBlock(fields, end)


def looks_like_header(data: bytes, pos: int = 0) -> bool:
    """Whether ``data`` at ``pos`` starts with a header field line."""
    return _FIELD.match(data, pos) is not None


@lru_cache(maxsize=256)
def resolve_charset(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or not a text codec."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    candidates = [name]
    if name.startswith("x-"):
        candidates.append(name[2:])
    if name.startswith("cp-"):
        candidates.append("cp" + name[3:])
    for candidate in candidates:
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError):
            continue
        # bytes-to-bytes codecs (base64, zlib, rot13 ...) and "undefined" are not charsets
        if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
            return None
        return info.name
    return None


def clean_text(text: str) -> str:
    """Drop NULs and replace lone surrogates (which some codecs produce) by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
    return text


def decode_bytes(
    data: bytes, label: str | None, defects: list[str] | None, where: str, *, final: bool = True
) -> str:
    """Decode ``data`` in charset ``label``; unknown or broken charsets fall back to UTF-8.

    ``final=False`` says ``data`` was cut from something longer: a character cut in half
    at its end is dropped without a defect.
    """
    codec = resolve_charset(label) if label else "utf-8"
    if codec is None:
        if defects is not None:
            defects.append(f"{where}: unknown charset {(label or '')[:40]!r}, read as utf-8")
        codec, errors = "utf-8", "replace"
    else:
        errors = "strict"
    try:
        text = codecs.getincrementaldecoder(codec)(errors).decode(data, final=final)
    except UnicodeError:  # also the bare UnicodeError some codecs raise
        if defects is not None:
            defects.append(f"{where}: bytes invalid in charset {codec!r}, replaced")
        try:
            text = codecs.getincrementaldecoder(codec)("replace").decode(data, final=final)
        except UnicodeError:
            text = data.decode("utf-8", "replace")
    return clean_text(text)


def decode_8bit(value: str, defects: list[str] | None, where: str) -> str:
    """A raw header value from the stdlib bytes parser (8-bit bytes as surrogates) as text.

    Raw 8-bit headers are read as UTF-8, else as windows-1252.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return value  # already text (no escaped bytes)
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return clean_text(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if defects is not None:
            defects.append(f"{where}: 8-bit header is not utf-8, read as cp1252")
        return clean_text(raw.decode("cp1252", "replace"))


def unfold(value: str) -> str:
    """Remove the line breaks of a folded header value."""
    if "\n" in value or "\r" in value:
        return value.replace("\r", "").replace("\n", "")
    return value


def collapse(value: str) -> str:
    """Whitespace runs to one space, ends stripped."""
    if value.isascii() and value.isprintable() and "  " not in value:
        return value.strip()  # nothing but single spaces inside
    return _WS.sub(" ", value).strip()


def _decode_word_payload(kind: str, payload: str) -> bytes:
    data = payload.encode("ascii", "replace")
    if kind in "bB":
        data = _B64_JUNK.sub(b"", data)
        if len(data) % 4 == 1:
            data = data[:-1]
        data += b"=" * (-len(data) % 4)
        return binascii.a2b_base64(data)
    return binascii.a2b_qp(data, header=True)


def decode_words(value: str, defects: list[str] | None = None, where: str = "header") -> str:
    """Decode RFC 2047 encoded words in ``value``; anything else is left as it is.

    Blanks between two encoded words are dropped (RFC 2047 6.2), and adjacent words in
    the same charset are joined before decoding, so a multi-byte character split across
    two words survives. Unknown charsets are read as UTF-8, with a defect.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""
    pending_charset = ""
    last = 0
    for m in _ENCODED_WORD.finditer(value):
        gap = value[last : m.start()]
        if gap and not (pending and gap.isspace()):
            if pending:
                out.append(decode_bytes(pending, pending_charset, defects, where))
                pending = b""
            out.append(gap)
        charset = m.group(1).split("*", 1)[0]
        try:
            chunk = _decode_word_payload(m.group(2), m.group(3))
        except (binascii.Error, ValueError):
            if defects is not None:
                defects.append(f"{where}: undecodable encoded word")
            chunk = m.group(0).encode("utf-8", "replace")
        if pending and charset.lower() != pending_charset.lower():
            out.append(decode_bytes(pending, pending_charset, defects, where))
            pending = b""
        pending += chunk
        pending_charset = charset
        last = m.end()
    if pending:
        out.append(decode_bytes(pending, pending_charset, defects, where))
    out.append(value[last:])
    return clean_text("".join(out))
