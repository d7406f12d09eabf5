"""The conversation id in Microsoft's Thread-Index header (SPEC 5 fallback).

Thread-Index is base64 of a 22-byte header block (one reserved byte, five bytes of
FILETIME, a 16-byte conversation GUID) followed by 5-byte child blocks, one per reply.
Bytes 6..22 are the GUID, shared by every message of the conversation.
"""

from __future__ import annotations

import binascii
import re

_BLANKS = re.compile(r"\s+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+")
_MAX_CHARS = 4096  # a real Thread-Index is well under 200 characters


def conversation_id(thread_index_header: str | None) -> str | None:
    """The conversation GUID as 32 lower-case hex digits, or None when absent or garbage."""
    if not thread_index_header:
        return None
    # Lenient about blanks (folding) and missing padding; anything else is garbage.
    text = _BLANKS.sub("", thread_index_header[:_MAX_CHARS]).rstrip("=")
    if not _BASE64.fullmatch(text):
        return None
    if len(text) % 4 == 1:
        text = text[:-1]
    text += "=" * (-len(text) % 4)
    try:
        decoded = binascii.a2b_base64(text.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    if len(decoded) < 22:
        return None
    guid = decoded[6:22]
    if guid.count(0) == len(guid):
        return None
    return guid.hex()
