"""Lenient header text: 8-bit values, RFC 2047 encoded words, charset labels.

The stdlib parser (compat32) hands header values over raw: 8-bit bytes as surrogate
escapes, encoded words undecoded. ``email.header.decode_header`` is strict where mail is
not (it raises on bad base64, unknown charsets and 8-bit text), so the little leniency
mail needs is here. Nothing raises on bad bytes; problems are appended as short strings
to a ``defects`` list when the caller passes one.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# RFC 2047 encoded word. The encoded text may (illegally) contain blanks, never a "?"
# (which also keeps the scan linear on hostile input).
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_WS = re.compile(r"\s+")

# Charset labels mail programs write that Python does not know, or knows by a narrower
# codec than the one the bytes really are in.
CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "x-sjis": "shift_jis",
    "ks_c_5601": "cp949",
    "ks_c_5601-1987": "cp949",  # what Outlook means by it
    "ascii": "utf-8",  # declared ASCII that carries 8-bit bytes is nearly always UTF-8
    "us-ascii": "utf-8",
    "ansi_x3.4-1968": "utf-8",
    "646": "utf-8",
}


@lru_cache(maxsize=256)
def resolve_charset(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or not a text codec."""
    name = label.strip().strip("\"'").lower()
    name = CHARSET_ALIASES.get(name, name)
    for candidate in (name, name[2:] if name.startswith("x-") else name):
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


def decode_bytes(data: bytes, label: str, defects: list[str] | None, where: str) -> str:
    """Decode ``data`` in charset ``label``; unknown or broken charsets fall back to UTF-8."""
    codec = resolve_charset(label)
    if codec is None:
        if defects is not None:
            defects.append(f"{where}: unknown charset {label[:40]!r}, read as utf-8")
        return clean_text(data.decode("utf-8", "replace"))
    try:
        return clean_text(data.decode(codec))
    except UnicodeError:  # also the bare UnicodeError some codecs raise
        if defects is not None:
            defects.append(f"{where}: bytes invalid in charset {codec!r}, replaced")
    try:
        return clean_text(data.decode(codec, "replace"))
    except UnicodeError:
        return data.decode("utf-8", "replace")


def decode_8bit(value: str, defects: list[str] | None, where: str) -> str:
    """A raw header value from the stdlib bytes parser (8-bit bytes as surrogates) as text.

    Raw 8-bit headers are read as UTF-8, else as windows-1252.
    """
    if value.isascii():
        return value
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


def _word_bytes(kind: str, payload: str) -> bytes:
    data = payload.encode("ascii", "replace")
    if kind in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = _B64_JUNK.sub(b"", data)  # junk, stray padding, a cut-off last quantum
    if len(data) % 4 == 1:
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def decode_words(value: str, defects: list[str] | None = None, where: str = "header") -> str:
    """Decode RFC 2047 encoded words in ``value``; anything else is left as it is.

    Blanks between two encoded words are dropped (RFC 2047 6.2), and adjacent words in
    the same charset are joined before decoding, so a multi-byte character split across
    two words survives. Unknown charsets are read as UTF-8, with a defect.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending, charset = b"", ""
    last = 0
    for m in _ENCODED_WORD.finditer(value):
        gap = value[last : m.start()]
        word_charset = m.group(1).split("*", 1)[0]  # drop an RFC 2231 language
        joined = bool(pending) and (not gap or gap.isspace())  # blanks between words go
        if pending and not (joined and word_charset.lower() == charset.lower()):
            out.append(decode_bytes(pending, charset, defects, where))
            pending = b""
        if gap and not joined:
            out.append(gap)
        try:
            pending += _word_bytes(m.group(2), m.group(3))
        except (binascii.Error, ValueError):
            if defects is not None:
                defects.append(f"{where}: undecodable encoded word")
            pending += m.group(0).encode("utf-8", "replace")
        charset = word_charset
        last = m.end()
    if pending:
        out.append(decode_bytes(pending, charset, defects, where))
    out.append(value[last:])
    return clean_text("".join(out))
