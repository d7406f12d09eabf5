"""Subjects: reply/forward prefixes, list tags, maildaemon's own tags (SPEC 5 and 6.1).

Three views of one subject:

- ``base_subject``: for display. maildaemon tags (``[owner:x]``, ``[@x]``, ``[stage:x]``,
  ``[client:x]``, ``[due:x]``, ``[done]``, ``[closed]``, ``[resolved]``, ``[ack]``, ``[#42]``)
  are removed wherever they are; reply and forward prefixes of the common languages are
  removed from the front, with their counters (``Re[2]:``, ``RE (3):``, ``Re^2:``) and
  ASCII or full-width colons; whitespace is collapsed.
- ``normalize_subject``: for matching. The base subject, NFKC-normalized and casefolded,
  with every leading bracket group removed as well (``[PATCH v2 3/7]`` and ``[PATCH v3
  3/7]`` match) and trailing ``(fwd)`` markers dropped.
- ``subject_tags`` / ``task_refs``: the maildaemon tags themselves.

How a list tag is told from other bracketed text: a bracket group is a *list tag* (and is
removed from the base subject) only when a reply or forward prefix follows it, as in
``[linux-ext4] Re: ...`` or ``Re: [list] Re: ...``. A bracket group that is followed by the
subject text itself stays in the base subject: ``[PATCH v2 3/7] ext4: fix``, ``[EXTERNAL]
Invoice``, ``Re: [ext4] question`` -> ``[ext4] question``. That keeps the base subject of a
reply equal to the base subject of the message it answers, whichever side of the prefix a
list manager put its tag. The normalized subject drops all leading bracket groups anyway.
"""

from __future__ import annotations

import re
import unicodedata

# Reply prefixes, by language: Re (en and most), AW (de), SV (sv, da, no), VS (fi),
# Antw (nl), Odp (pl), R and RIF (it), Réf and Rép (fr), RES (pt), Ynt (tr), 回复 and
# 答复 (zh-Hans), 回覆 (zh-Hant). VS is also a Danish forward prefix; it is read as a
# reply, which is the cautious choice for the forward rule of SPEC 5.
_REPLY_WORDS = ("re", "aw", "sv", "vs", "antw", "odp", "rif", "r", "réf", "rép", "res", "ynt")
_REPLY_CJK = ("回复", "回覆", "答复")
# Forward prefixes: Fwd and Fw (en), WG (de), TR (fr), VB (sv), RV (es), ENC (pt),
# PD (pl), I (it), İLT (tr), Doorst (nl), 转发 (zh-Hans), 轉寄 (zh-Hant).
_FORWARD_WORDS = ("fwd", "fw", "wg", "tr", "vb", "rv", "enc", "pd", "i", "ilt", "i̇lt", "doorst")
_FORWARD_CJK = ("转发", "轉寄")

FORWARD_PREFIXES = frozenset(w.casefold() for w in (*_FORWARD_WORDS, *_FORWARD_CJK))

_ALL = sorted({*_REPLY_WORDS, *_REPLY_CJK, *_FORWARD_WORDS, *_FORWARD_CJK}, key=len, reverse=True)
_WORDS = "|".join(re.escape(w) for w in _ALL)
_BRACKET = r"\[[^\[\]]*\]"
_COUNTER = r"(?:\s*[\[(]\s*\d{1,4}\s*[\])]|\^\d{1,4})?"
# Optional list tags, then one prefix with its counter and its colon (the colon is what
# keeps ``Rest: ...`` or ``I am ...`` from reading as a prefix).
_LEAD = re.compile(
    rf"\s*((?:{_BRACKET}\s*)*)({_WORDS}){_COUNTER}\s*[:：]\s*",
    re.IGNORECASE,
)
_LEADS = re.compile(rf"(?:{_LEAD.pattern})+", re.IGNORECASE)  # all of them in one go
_LEADING_BRACKETS = re.compile(rf"\s*(?:{_BRACKET}\s*)+")
_TRAILING_FWD = re.compile(r"\s*[\[(]\s*(?:fwd|fw|forw|forward)\s*[\])]\s*$", re.IGNORECASE)

_VALUE = r"[^\[\]\s](?:[^\[\]]*[^\[\]\s])?"
_TAG = re.compile(
    rf"\[\s*((?:owner|stage|client|due)\s*:\s*{_VALUE}|@\s*{_VALUE}"
    r"|done|closed|resolved|ack|#\s*\d{1,9})\s*\]",
    re.IGNORECASE,
)
_WS = re.compile(r"\s+")
_AROUND_COLON = re.compile(r"\s*:\s*")

GENERIC_SUBJECTS = frozenset(
    {
        "",
        "hi",
        "hello",
        "hey",
        "hallo",
        "question",
        "questions",
        "quick question",
        "help",
        "test",
        "testing",
        "update",
        "fyi",
        "urgent",
        "important",
        "(no subject)",
        "no subject",
        "(none)",
        "re",
        "fwd",
        "thanks",
        "thank you",
        "meeting",
        "follow up",
        "follow-up",
        "followup",
        "info",
        "request",
        "reminder",
    }
)


def _collapse(s: str) -> str:
    return _WS.sub(" ", s).strip()


def _strip_prefixes(s: str) -> str:
    m = _LEADS.match(s)
    return s if m is None else s[m.end() :]


def base_subject(s: str | None) -> str:
    """The subject for display: maildaemon tags, reply/forward prefixes and list tags removed."""
    if not s:
        return ""
    if "[" in s:
        s = _TAG.sub(" ", s)
    return _collapse(_strip_prefixes(_collapse(s)))


def normalize_subject(s: str | None) -> str:
    """The subject for matching threads by subject; ``""`` when nothing is left."""
    text = unicodedata.normalize("NFKC", base_subject(s)).casefold()
    while True:
        before = text
        m = _LEADING_BRACKETS.match(text)
        if m is not None:
            text = text[m.end() :]
        text = _strip_prefixes(text)
        text = _TRAILING_FWD.sub("", text)
        if text == before:
            break
    return _collapse(text)


def is_forward(s: str | None) -> bool:
    """Whether the outermost prefix of the subject is a forward prefix (Fwd, WG, TR ...)."""
    if not s:
        return False
    if "[" in s:
        s = _TAG.sub(" ", s)
    m = _LEAD.match(s)
    return m is not None and m.group(2).casefold() in FORWARD_PREFIXES


def is_generic_subject(normalized: str) -> bool:
    """Whether a normalized subject says too little to match threads by (``GENERIC_SUBJECTS``)."""
    return normalized.strip(" .!?,;:-_*~") in GENERIC_SUBJECTS or normalized in GENERIC_SUBJECTS


def _tag_text(raw: str) -> str:
    text = _collapse(raw).lower()
    if text.startswith("#"):
        return f"#{int(text[1:].strip())}"
    if text.startswith("@"):
        return "@" + text[1:].strip()
    return _AROUND_COLON.sub(":", text, count=1)


def subject_tags(s: str | None) -> tuple[str, ...]:
    """The maildaemon tags of a subject, left to right, as lower-cased inner text.

    ``"[Owner: Alice] Re: x [@bob] [DONE] [#042]"`` gives
    ``("owner:alice", "@bob", "done", "#42")``.
    """
    if not s or "[" not in s:
        return ()
    return tuple(_tag_text(m.group(1)) for m in _TAG.finditer(s))


def task_refs(s: str | None) -> tuple[int, ...]:
    """The task numbers of the ``[#42]`` tags of a subject, left to right, without repeats."""
    refs = [int(t[1:]) for t in subject_tags(s) if t.startswith("#")]
    return tuple(dict.fromkeys(refs))
