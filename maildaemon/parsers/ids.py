"""Lenient reading of Message-ID, In-Reply-To and References (SPEC 5).

Real mail writes ids in angle brackets anywhere in the value (folded, several per line,
inside comments such as ``<id> (Your message of ...)``), without brackets (``abc@host``),
or as comma-separated lists (Outlook). Every id comes out as ``<local@domain>``.

Rules:
- ids in angle brackets are taken from anywhere in the value, blanks inside removed;
- only when a value has no bracketed id at all, bare ``local@domain`` tokens separated by
  blanks, commas or semicolons are taken, outside parenthesised comments, and only when the
  whole token is id-shaped (so ``bob@example.com's message of ...`` yields nothing);
- an id must have a non-empty local part and domain around an ``@``; anything else
  (``(Your message of ...)``, a bare date, ``<>``) is junk and dropped;
- encoded words are decoded first; duplicates are removed keeping the first occurrence;
- at most ``limit`` ids are kept: the first one (the thread root in References) and the
  last ``limit - 1`` (the nearest ancestors), so a 135 KB header stays small.
"""

from __future__ import annotations

import re

from maildaemon.parsers.headers import decode_words

MAX_IDS = 200
MAX_ID_LENGTH = 500

_BRACKETED = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_SEPARATORS = re.compile(r"[\s,;]+")
_BARE_ID = re.compile(r"[^\s@<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.\-_]*[A-Za-z0-9])?")
_BLANKS = re.compile(r"\s+")
_TOKEN_TRIM = "\"'.:"


def _normalize(inner: str) -> str | None:
    inner = _BLANKS.sub("", inner)
    if len(inner) > MAX_ID_LENGTH:
        return None
    local, at, domain = inner.rpartition("@")
    if not at or not local or not domain:
        return None
    return f"<{inner}>"


def parse_ids(value: str | None, *, limit: int = MAX_IDS) -> tuple[str, ...]:
    """The ids in a Message-ID, In-Reply-To or References value, in order, deduplicated."""
    if not value:
        return ()
    if "=?" in value:
        value = decode_words(value)
    found: list[str] = []
    if "<" in value:
        for inner in _BRACKETED.findall(value):
            norm = _normalize(inner)
            if norm is not None:
                found.append(norm)
    if not found:
        text = value
        for _ in range(8):  # nested comments, a few levels deep at most
            if "(" not in text:
                break
            text = _COMMENT.sub(" ", text)
        for token in _SEPARATORS.split(text):
            token = token.strip(_TOKEN_TRIM)
            if "@" in token and _BARE_ID.fullmatch(token):
                norm = _normalize(token)
                if norm is not None:
                    found.append(norm)
    if not found:
        return ()
    unique = list(dict.fromkeys(found))
    if len(unique) > limit > 0:
        unique = [unique[0], *unique[len(unique) - (limit - 1) :]] if limit > 1 else unique[:1]
    return tuple(unique)
