"""The new text of a reply: the body without quoted history and signature.

mail-parser-reply finds the quote headers ("On ... wrote:", "Am ... schrieb ...:", Outlook
"From: / Sent:" and "Von: / Gesendet:" blocks) and signatures in ``REPLY_LANGUAGES``
through its API: ``EmailMessage(text, languages, keep_hyphen_lists=True).read()``, then the
first reply's ``body`` (without signature and disclaimers). ``keep_hyphen_lists`` keeps
"- item" lines, which the default reads as the start of a signature.

Its cost grows with the length of the input and with each language, so:

- ``>``-quoted lines are removed first: they are never new text, and on list mail they are
  most of the body (an interleaved reply keeps its answers, in order);
- only the first ``REPLY_PREFIX_CHARS`` characters of what is left are read;
- the library's own three regexes are handed back to it wrapped (the ``_header_regex``,
  ``_disclaimers_regex`` and ``_signature_regex`` fields of ``EmailMessage``), see below;
- its text normalization skips its last step, a regex for the Outlook separator tried at
  every character, when the text has no run of 32 ``_`` or ``-`` for it to find.

The wrapping (the "shim") is an optimization only: it changes where the regex engine looks,
never what the regexes are or what the parser does with their matches. Every match of
these regexes starts at a line start or at the line break before it (or, for disclaimers,
at a sentence end), but ``re`` tries them at every character of the text. The wrappers find
candidate line starts with a copy of the library's regex behind a literal ``\\n`` (which the
engine skips to quickly), then run the library's regex, unchanged, at those positions.
Measured with six languages and 4,096 characters on the 10k list corpus (one core): 0.15
ms a message instead of 0.68; the same reply body as the plain library for all 16,667
non-empty texts of the three corpora and for 30,000 generated ones.

Verified against mail-parser-reply 1.36 (pyproject pins ``>=1.36,<2``; 1.36 is the newest
release). The shim depends on the library's internals, so at import it checks them (the
three private fields, the regex properties, the shape of the signature and disclaimer
regexes) and compares its output with the plain library on ``_SELF_CHECK``. If anything
is not as expected, ``SHIM_PROBLEM`` says what, and every call uses the plain library;
a call that fails inside the shim is retried on the plain library. Nothing here raises.
``tests/test_parsers.py`` compares shim and plain library on every fixture and on
generated texts, and fails if the shim is off, so a new library version is noticed.

If the library fails, the text with quoted lines removed is the reply text.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any

from mailparser_reply import EmailMessage

REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
REPLY_PREFIX_CHARS = 4096
VERIFIED_VERSIONS = "1.36"

# A quoted line with the line break before it (the text gets a leading "\n").
_QUOTED_LINE = re.compile(r"\n[ \t]*>[^\n]*")
_BLANK_LINES = re.compile(r"\n{3,}")

# What the shim relies on in mailparser_reply.parser.EmailMessage.
_REGEX_FIELDS = ("_header_regex", "_disclaimers_regex", "_signature_regex")
_REGEX_PROPERTIES = ("HEADER_REGEX", "DISCLAIMERS_REGEX", "SIGNATURE_REGEX")
_SIGNATURE_TAIL = r"(.|\s)*"  # the signature regex runs to the end of the text
_DISCLAIMER_START = "(?:[\\n\\r.!?]|^)"  # mailparser_reply.constants.SENTENCE_START's start


class _Wrapped:
    """Anything the library might call on a wrapped regex that is not wrapped is the plain
    regex's, so a new use of the regex in a later version still gets the plain result."""

    plain: re.Pattern[str]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plain, name)

    def __bool__(self) -> bool:  # the library tests ``if self._header_regex:``
        return True


class _FastHeader(_Wrapped):
    """``findall`` of the header regex that only visits line breaks.

    Every alternative of the header regex begins with ``^`` or ``\\n``, so a match begins
    at a line start or at the line break before it. A copy of the regex behind a literal
    ``\\n`` (searched in the text with a line break put in front) jumps from line break
    to line break to the next line where one can match; the plain regex is then run at that
    line break and that line start, in the order ``findall`` would have tried them, so the
    result (down to a leading ``\\n`` in a header, which the library's ``str.find`` of the
    header depends on) is the plain ``findall``'s.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.plain = pattern
        self.fast = re.compile(r"\n(?:" + pattern.pattern + ")", pattern.flags)
        self.exact = pattern.groups > 1  # findall gives tuples, as the library expects

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
            line = hit.start()  # the plain regex matches at the line start text[line]
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


class _FastDisclaimers(_Wrapped):
    """``findall`` of the disclaimer regex, whose matches start at a sentence end, a line
    break or the start: that first class becomes a plain character set (which the engine
    scans for quickly), and a line break put before the text stands for the start. The
    matches may differ by leading white space; the library strips them."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.plain = pattern
        source = "[\\n\\r.!?]" + pattern.pattern[len(_DISCLAIMER_START) :]
        self.fast = re.compile(source, pattern.flags)

    def findall(self, text: str) -> list[Any]:
        return self.fast.findall("\n" + text)


class _FastSignature(_Wrapped):
    """``search`` of the signature regex that only visits line breaks.

    The regex is ``(?:alternatives)(.|\\s)*``: a match always runs to the end of the text,
    so only where the leftmost match starts matters (up to leading white space, which the
    library strips). The alternatives start at the start of the text, at a line start
    (``\\s*^``, ``^``), or with the Outlook separator's line breaks. So the leftmost match
    starts at 0, at the first line start where a copy behind a literal ``\\n`` matches, or
    at the first separator, whichever comes first; the plain regex is run there.
    ``(.|\\s)*`` becomes ``[\\s\\S]*`` (the same text without a backtracking group per
    character).
    """

    def __init__(self, pattern: re.Pattern[str], separator: str) -> None:
        source = pattern.pattern.replace(_SIGNATURE_TAIL, r"[\s\S]*")
        self.plain = re.compile(source, pattern.flags)
        self.fast = re.compile(r"\n(?:" + source + ")", pattern.flags)
        self.separator = re.compile(separator, pattern.flags) if separator in source else None

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


class _ShimMessage(EmailMessage):  # type: ignore[misc]
    """``EmailMessage`` whose ``_normalize_text`` (line ends, blanks around each line, then
    ``re.sub`` of ``([^\\n])`` + ``OUTLOOK_MAIL_SEPARATOR``) leaves out that last
    substitution when it cannot match: the separator is 32 or more ``_`` and ``-`` in a
    row, which the first two steps neither make nor break, and without one in the text
    the substitution changes nothing (it still costs a regex attempt at every character)."""

    text: str  # the library's field (an annotation only: no new dataclass field)

    def _normalize_text(self) -> None:
        text = self.text
        if text.count("_") + text.count("-") >= 32 and _SEPARATOR_RUN.search(text) is not None:
            super()._normalize_text()
            return
        text = text.replace("\r\n", "\n")
        self.text = "\n".join([line.strip() for line in text.split("\n")])


# OUTLOOK_MAIL_SEPARATOR's [_-]{32,}, spelled so that the engine skips to the first [_-]
_SEPARATOR_RUN = re.compile(r"[_-][_-]{31}")

# Texts the shim must read as the plain library does, or it is not used (import check).
_SELF_CHECK = (
    "Thanks, looks good.\n\nOn Mon, 2 Nov 2026 at 10:00, A <a@x> wrote:\n> hi\n",
    "Hi\n\nBest regards\nBob\n\nFrom: A\nSent: Monday\nTo: B\nSubject: x\n\nold text",
    "To: E <e@x>\nFrom: X <x@x>\nSubject: s\n\nbody\nTo: E <e@x>\nFrom: X <x@x>\nSubject: s",
    "Text\n\n______________________________________\n\nSeparated",
    "Thanks, I will look.\n\nCheers\n-- \nsig",
    "Neu.\n\nAm 02.11.2026 um 10:00 schrieb Hans <h@x>:\nalt\n\nGrüße\nHans",
    "Oui.\n\nLe 2 nov. 2026 à 10:00, Jean a écrit :\nvieux\n\nCordialement",
    "Sí.\n\nEl lun, 2 nov 2026 a las 10:00, Ana escribió:\nviejo",
    "Ja.\n\nOp ma 2 nov 2026 om 10:00 schreef Piet:\noud",
    "Sì.\n\nIl giorno lun 2 nov 2026, Gino ha scritto:\nvecchio\nDa: G\nInviato: lun",
    "Ok.\n\n-----Original Message-----\nFrom: a\nSent: b\n",
    "Steps:\n- restart\n- clear the cache\n\nSent from my iPhone",
    "CAUTION: external mail. Be careful with this mail.\nReal text.",
    "  Hi \r\n\r\n Bob  \n \t\nThanks\r\n\n   __________-_____________-____________\nold",
)


def _read(text: str, regexes: dict[str, Any]) -> str:
    """The library's reply body of ``text``; ``regexes`` are its private regex fields
    (when given, the shim's, read by ``_ShimMessage``; else the plain library)."""
    cls = _ShimMessage if regexes else EmailMessage
    message = cls(
        text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True, **regexes
    ).read()
    body = message.replies[0].body if message.replies else ""
    if not isinstance(body, str):
        raise TypeError(f"reply body is {type(body).__name__}, not str")
    return body


def _build(cls: Callable[..., Any] = EmailMessage) -> tuple[dict[str, Any], str | None]:
    """The wrapped regexes to pass to ``cls``, or ``{}`` and why the shim is not usable."""
    try:
        from mailparser_reply.constants import OUTLOOK_MAIL_SEPARATOR

        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        missing = [name for name in _REGEX_FIELDS if name not in fields]
        missing += [name for name in _REGEX_PROPERTIES if not hasattr(cls, name)]
        if missing:
            return {}, f"EmailMessage has no {', '.join(missing)}"
        template = cls(text="", languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
        header, disclaimers, signature = (getattr(template, n) for n in _REGEX_PROPERTIES)
        if not all(isinstance(p, re.Pattern) for p in (header, disclaimers, signature)):
            return {}, "the regex properties are not compiled str patterns"
        if not signature.pattern.endswith(_SIGNATURE_TAIL + ")"):
            return {}, "the signature regex does not end with (.|\\s)*"
        if not disclaimers.pattern.startswith(_DISCLAIMER_START):
            return {}, "the disclaimer regex does not start with SENTENCE_START"
        regexes: dict[str, Any] = dict(
            zip(
                _REGEX_FIELDS,
                (
                    _FastHeader(header),
                    _FastDisclaimers(disclaimers),
                    _FastSignature(signature, OUTLOOK_MAIL_SEPARATOR),
                ),
                strict=True,
            )
        )
        for text in _SELF_CHECK:
            if _read(text, regexes) != _read(text, {}):
                return {}, f"the shim reads {text[:30]!r} differently"
    except Exception as e:  # any surprise in the library's internals: use it plainly
        return {}, f"{type(e).__name__}: {e}"
    return regexes, None


_SHIM, SHIM_PROBLEM = _build()
SHIM_ACTIVE = SHIM_PROBLEM is None
if not SHIM_ACTIVE:
    logging.getLogger(__name__).warning(
        "mail-parser-reply shim off (verified on %s): %s", VERIFIED_VERSIONS, SHIM_PROBLEM
    )


def strip_quoted(text: str) -> str:
    """The text without its ``>``-quoted lines."""
    if ">" not in text:
        return text
    return _QUOTED_LINE.sub("", "\n" + text)[1:]


def reply_body(unquoted: str, *, shim: bool = True) -> str:
    """The library's reply body of ``unquoted``; through the shim when it is usable and
    ``shim`` is true, else plainly. Raises what the library raises."""
    if shim and _SHIM:
        try:
            return _read(unquoted, _SHIM)
        except Exception:  # the shim failing where the library would not: ask it plainly
            logging.getLogger(__name__).debug("reply shim failed; using the library plainly")
    return _read(unquoted, {})


def reply_text(text: str) -> str:
    """The new text of ``text`` (at most ``REPLY_PREFIX_CHARS`` characters)."""
    unquoted = strip_quoted(text[: REPLY_PREFIX_CHARS * 16])[:REPLY_PREFIX_CHARS]
    if not unquoted.strip():
        return ""
    try:
        new = reply_body(unquoted)
    except Exception:  # a third-party parser on hostile text: fall back
        new = unquoted
    return _BLANK_LINES.sub("\n\n", new).strip()
