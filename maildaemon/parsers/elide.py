"""Long base64 runs taken out of a message before the stdlib parse, so memory stays bounded.

The stdlib parser holds a message several times over (lines, then payload strings): 140 to
300 MB for a 20-27 MB message, nearly all of it attachment base64. The parser never
decodes an attachment; it needs its size, which comes from the number of base64
characters. So before the parse, each run of at least ``ELIDE_MIN_BYTES`` of consecutive
base64 lines is replaced with one placeholder line that records how many bytes, base64
characters and line breaks it stands for; ``body.py`` adds them back when it sizes a
payload, so sizes are exact (``get_payload(decode=True)`` lengths for other encodings,
the flattened length of a message/rfc822 part, as without eliding).

Why this cannot change the MIME structure:

- a run is whole lines of ``A-Z a-z 0-9 + /`` only, and blank lines between them (the
  padded last line of a base64 body, with ``=``, stays). Such a line has no colon and
  does not start with white space, so it is neither a header field nor a continuation
  line (the stdlib ends a header block at the first such line: it is body), nor a MIME
  boundary (``--``). The placeholder line has no
  colon, no leading white space and no ``--`` either, so the stdlib reads the same parts.
- a text part's base64 is decoded for the text, so the first ``keep`` bytes of a run (the
  most of a text part's payload that ``body.py`` reads) are kept, and only the rest is
  elided. A run is elided whole only when the header block right before it (after a
  blank line, and after a boundary line declared by a ``boundary=`` earlier in the message,
  or the top-level header) reads as the stdlib would read it and has a Content-Type that
  is not text, multipart or message: an attachment, e.g. ``application/pdf``. Whatever is
  unclear keeps the head.

A wrong guess cannot change the result either: ``body.py`` raises ``ElidedTextError`` when
a placeholder is in the part of a text payload it reads (or in the epilogue, which
mail-parser may read as a part), and ``parse_message`` then parses the message again
without eliding. On the three corpora that happens to 3 of 16,840 messages, all with
broken MIME.
"""

from __future__ import annotations

import re

ELIDE_MIN_BYTES = 64 * 1024
LOOKBACK_BYTES = 16 * 1024  # searched before a run for its part's header block

# A stretch of base64 characters and line breaks after some other byte: one character class
# repeated (a repeated group of lines would make the regex engine keep a backtracking
# frame for every line, ~500 bytes each), and the leading other byte lets it scan each
# stretch once (a run of 60 KB would otherwise be rescanned from every character).
_STRETCH = rb"[^A-Za-z0-9+/\r\n]([A-Za-z0-9+/\r\n]{%d,})"  # % min_bytes
# email.feedparser.headerRE without "From " (a header line or a continuation line)
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:|[ \t]")
_NOT_ATTACHMENT_TYPES = (b"text", b"multipart", b"message")
ELIDED_MARK = "(maildaemon elided "
# bytes, base64 characters, line breaks; no colon, so it is never read as a header field
_PLACEHOLDER = ELIDED_MARK + "{} bytes, {} base64 characters in {} lines)"
_ELIDED = re.compile(r"\(maildaemon elided (\d+) bytes, (\d+) base64 characters in (\d+) lines\)")
_ELIDED_BYTES = re.compile(_ELIDED.pattern.encode())


class ElidedTextError(Exception):
    """Elided bytes would be read as text: the message is to be parsed without eliding."""


def _declared(raw: bytes, start: int, end: int, token: bytes) -> bool:
    """``boundary=token`` (quoted or not) occurs in ``raw[start:end]``."""
    pattern = rb'(?i)boundary[ \t]*=[ \t]*"?' + re.escape(token) + rb'(?:"|[ \t\r\n;]|$)'
    return re.compile(pattern).search(raw, start, end) is not None


def _is_attachment_body(raw: bytes, start: int, begin: int) -> bool:
    """The run at ``begin`` is the body of a part whose header says it is not text."""
    before = raw[max(start, begin - LOOKBACK_BYTES) : begin]
    head = before.rstrip(b"\r\n")
    if before.count(b"\n", len(head)) < 2:  # no blank line right before the run
        return False
    boundary = head.rfind(b"\n--")
    if boundary >= 0:
        lines = head[boundary + 1 :].splitlines()
        token = lines[0][2:].rstrip()
        if not token or not _declared(raw, start, begin - len(before) + boundary, token):
            return False
        lines = lines[1:]
    elif begin - len(before) == start:  # the top-level header
        lines = head.splitlines()
    else:
        return False
    if not lines or not all(_HEADER_LINE.match(line) for line in lines):
        return False
    for i, line in enumerate(lines):
        if line[:13].lower() == b"content-type:":
            value = line[13:]
            for more in lines[i + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += more
            ctype = value.split(b";", 1)[0].strip().lower()  # as Message.get_content_type
            if ctype.count(b"/") != 1:  # the stdlib reads it as text/plain
                return False
            return ctype.split(b"/")[0] not in _NOT_ATTACHMENT_TYPES
    return False  # no Content-Type: text/plain (or message/rfc822 in a digest)


def _whole_lines(raw: bytes, begin: int, end: int) -> tuple[int, int]:
    """The run of whole base64 lines in the stretch ``raw[begin:end]``: from the first
    line start that is not a blank line (the stretch starts in a line that has another
    byte, and may go on with the blank line that ends a header block) to the end of its
    last whole line."""
    begin = raw.find(b"\n", begin, end) + 1 or end
    while begin < end and raw[begin] in b"\r\n":
        begin += 1
    return begin, max(begin, raw.rfind(b"\n", begin, end) + 1)


def _placeholder(raw: bytes, begin: int, end: int) -> bytes:
    """The line that stands for the run ``raw[begin:end]``: it ends as the run does (the
    stdlib gives the last line break before a boundary to the boundary), and counts its
    bytes without that line break, its base64 characters and its line breaks."""
    lf, cr = raw.count(b"\n", begin, end), raw.count(b"\r", begin, end)
    breaks = lf + cr - raw.count(b"\r\n", begin, end)  # as the stdlib splits lines
    ending = b"\r\n" if raw.endswith(b"\r\n", begin, end) else b"\n"
    text = _PLACEHOLDER.format(end - begin - len(ending), end - begin - lf - cr, breaks)
    return text.encode() + ending


def elide_base64(raw: bytes, start: int, keep: int, min_bytes: int = ELIDE_MIN_BYTES) -> bytes:
    """``raw[start:]`` with its runs of ``min_bytes`` or more of base64 lines replaced by
    placeholder lines, keeping the first ``keep`` bytes of a run unless it is an
    attachment's body. Without such runs, ``raw[start:]`` (``raw`` itself when ``start``
    is 0)."""
    if len(raw) - start < min_bytes:
        return raw[start:]
    pieces: list[bytes] = []
    pos = start
    for stretch in re.compile(_STRETCH % min_bytes).finditer(raw, start):
        begin, end = _whole_lines(raw, *stretch.span(1))
        if end - begin < min_bytes:
            continue
        if not _is_attachment_body(raw, start, begin):
            cut = raw.find(b"\n", begin + max(keep, 1) - 1, end)
            if cut < 0 or end - (cut + 1) < min_bytes:
                continue
            begin = cut + 1
        pieces += [raw[pos:begin], _placeholder(raw, begin, end)]
        pos = end
    if not pieces:
        return raw[start:]
    pieces.append(raw[pos:])
    return b"".join(pieces)


def elided_bytes(data: bytes, *, flattened: bool = False) -> int:
    """Bytes to add to ``len(data)`` for the runs its placeholders stand for: as they were
    in the message, or (``flattened``) as the stdlib generator writes them, each line
    break as one ``\\n``. (A run and its placeholder end with the same line break, so
    only what comes before it is counted.)"""
    if ELIDED_MARK.encode() not in data:
        return 0
    extra = 0
    for m in _ELIDED_BYTES.finditer(data):
        size, chars, breaks = (int(group) for group in m.groups())
        extra += (chars + breaks - 1 if flattened else size) - len(m.group())
    return extra


def without_elided(payload: str) -> tuple[str, int]:
    """``payload`` without its placeholders, and the base64 characters they stand for."""
    if ELIDED_MARK not in payload:
        return payload, 0
    chars = sum(int(m.group(2)) for m in _ELIDED.finditer(payload))
    return _ELIDED.sub("", payload), chars
