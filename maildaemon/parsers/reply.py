"""The new text of a reply: the body without quoted history and signature.

mail-parser-reply finds the quote headers ("On ... wrote:", "Am ... schrieb ...:", Outlook
"From: / Sent:" and "Von: / Gesendet:" blocks) and signatures in many languages
(``REPLY_LANGUAGES``). Its regexes are tried at every character of the input, so its cost
grows with the length of the input and with each language: on the list corpus, six
languages over 4 KB cost ~1 ms a message as shipped. Three things bound it:

- ``>``-quoted lines are removed first: they are never new text, and on list mail they are
  most of the body (an interleaved reply keeps its answers, in order);
- only the first ``REPLY_PREFIX_CHARS`` characters of what is left are read, so the reply
  text is at most that long;
- the parser's regexes are compiled once, and handed to it wrapped so that the regex
  engine only visits line breaks (where every header and signature match must start)
  instead of every character. The wrappers return what the plain regexes return:
  ``tests/test_parsers.py`` compares them, and on the three corpora (33,619 texts) the
  reply texts are identical to the unwrapped parser's.

If the parser fails, the text with quoted lines removed is the reply text.
"""

from __future__ import annotations

import re
from typing import Any

from mailparser_reply.constants import OUTLOOK_MAIL_SEPARATOR
from mailparser_reply.parser import EmailMessage

REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
REPLY_PREFIX_CHARS = 4096

# A quoted line with the line break before it (the text gets a leading "\n"); the
# literal "\n" prefix lets the engine skip from line break to line break.
_QUOTED_LINE = re.compile(r"\n[ \t]*>[^\n]*")
_BLANK_LINES = re.compile(r"\n{3,}")


class _FastHeader:
    """``findall`` of the header regex that only visits line breaks.

    Every alternative of the header regex begins with ``^`` or ``\\n``, so a match begins
    at a line start or at the line break before it. A copy of the regex behind a literal
    ``\\n`` (searched in the text with a line break put in front) jumps from line break
    to line break to the next line where one can match; the plain regex is then run at that
    line break and that line start, in the order ``findall`` would have tried them, so the
    result (down to a leading ``\\n`` in a header, which the parser's ``str.find`` of the
    header depends on) is the plain ``findall``'s.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.plain = pattern
        self.fast = re.compile(r"\n(?:" + pattern.pattern + ")", pattern.flags)
        self.exact = pattern.groups > 1  # findall gives tuples, as the parser expects

    def findall(self, text: str) -> list[Any]:
        if not self.exact:
            return self.plain.findall(text)
        padded = "\n" + text  # padded[k] is text[k - 1]
        found: list[Any] = []
        done = 0  # text offset where the previous match ended
        pos = 0
        while True:
            hit = self.fast.search(padded, pos)
            if hit is None:
                return found
            line = hit.start()  # a line starts at text offset `line`
            m = None
            if line >= 1 and line - 1 >= done:
                m = self.plain.match(text, line - 1)  # at the line break first
            if m is None or m.end() == m.start():
                m = self.plain.match(text, line)
            if m is None or m.end() == m.start():
                found.append(hit.groups(""))  # cannot happen; keep the guarded result
                pos = hit.end()
                done = hit.end() - 1
                continue
            found.append(m.groups(""))
            done = m.end()
            pos = done + 1

    def __bool__(self) -> bool:
        return True


class _FastDisclaimers:
    """``findall`` of the disclaimer regex, whose matches start at a sentence end, a line
    break or the start: that first class becomes a plain character set (which the engine
    scans for quickly), and a line break put before the text stands for the start."""

    _START = "(?:[\\n\\r.!?]|^)"

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.plain = pattern
        self.prefixed = pattern.pattern.startswith(self._START)
        source = "[\\n\\r.!?]" + pattern.pattern[len(self._START) :]
        self.fast = re.compile(source, pattern.flags) if self.prefixed else pattern

    def findall(self, text: str) -> list[Any]:
        if not self.prefixed:
            return self.plain.findall(text)
        return self.fast.findall("\n" + text)

    def __bool__(self) -> bool:
        return True


class _FastSignature:
    """``search`` of the signature regex that only visits line breaks.

    The regex is ``(?:alternatives)(.|\\s)*``: a match always runs to the end of the text,
    so only where the leftmost match starts matters, and the parser strips it. The
    alternatives start at the start of the text, at a line start (``\\s*^``, ``^``), or
    with the Outlook separator's line breaks. So the leftmost match starts at 0, at the
    first line start where a copy behind a literal ``\\n`` matches, or at the first
    separator, whichever comes first; the plain regex is run there. ``(.|\\s)*`` becomes
    ``[\\s\\S]*`` (the same text without a backtracking group per character).
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        source = pattern.pattern.replace(r"(.|\s)*", r"[\s\S]*")
        self.plain = re.compile(source, pattern.flags)
        self.fast = re.compile(r"\n(?:" + source + ")", pattern.flags)
        self.separator = (
            re.compile(OUTLOOK_MAIL_SEPARATOR, pattern.flags)
            if OUTLOOK_MAIL_SEPARATOR in source
            else None
        )

    def search(self, text: str) -> re.Match[str] | None:
        m = self.plain.match(text)
        if m is not None:
            return m
        starts = []
        hit = self.fast.search(text)
        if hit is not None:
            starts.append(hit.start() + 1)
        if self.separator is not None:
            sep = self.separator.search(text)
            if sep is not None:
                starts.append(sep.start())
        for start in sorted(starts):
            m = self.plain.match(text, start)
            if m is not None:
                return m
        return None

    def __bool__(self) -> bool:
        return True


def _compile() -> tuple[_FastHeader, _FastDisclaimers, _FastSignature]:
    template = EmailMessage(text="", languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    return (
        _FastHeader(template.HEADER_REGEX),
        _FastDisclaimers(template.DISCLAIMERS_REGEX),
        _FastSignature(template.SIGNATURE_REGEX),
    )


_HEADER, _DISCLAIMERS, _SIGNATURE = _compile()


def strip_quoted(text: str) -> str:
    """The text without its ``>``-quoted lines."""
    if ">" not in text:
        return text
    return _QUOTED_LINE.sub("", "\n" + text)[1:]


def reply_text(text: str) -> str:
    """The new text of ``text`` (at most ``REPLY_PREFIX_CHARS`` characters)."""
    unquoted = strip_quoted(text[: REPLY_PREFIX_CHARS * 16])[:REPLY_PREFIX_CHARS]
    if not unquoted.strip():
        return ""
    try:
        message = EmailMessage(
            text=unquoted,
            languages=list(REPLY_LANGUAGES),
            keep_hyphen_lists=True,
            _header_regex=_HEADER,
            _disclaimers_regex=_DISCLAIMERS,
            _signature_regex=_SIGNATURE,
        ).read()
        new = message.replies[0].body if message.replies else ""
    except Exception:  # a third-party parser on hostile text: fall back
        new = unquoted
    if not isinstance(new, str):
        new = unquoted
    return _BLANK_LINES.sub("\n\n", new).strip()
