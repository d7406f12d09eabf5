"""UID FETCH and UID SEARCH on an IMAPClient's connection, answered without its response
parser (SPEC 4; issue 4's sync speed). Used by `imap.py` only.

imapclient reads a FETCH response a character at a time in Python; for a folder of list mail
that was most of a pass's time. `Wire` sends its commands on imaplib's socket with imaplib's
tags and reads the answers off imaplib's buffered file up to each tagged completion, so
imaplib (and imapclient above it) find their state whole between commands. The responses are
parsed by the pure `parsers.bodystructure.parse_response`, which a test checks against
imapclient's own parser. It relies on imaplib's ``_new_tag``, ``_get_line``, ``read``,
``send`` and ``tagged_commands``, stable since Python 3.6; the IMAP tests exercise all of
them on every supported Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from maildaemon.parsers.bodystructure import fetch_items, parse_response

_LITERAL = re.compile(rb"\{(\d+)\}$")


class Wire:
    """UID FETCH (and UID SEARCH) commands sent and answered on an IMAPClient's
    connection without its response parser, which reads a character at a time in Python
    (most of a pass's time went there): a command goes out on imaplib's socket with an
    imaplib tag, and answers are read off imaplib's buffered file up to the tagged
    completion, so imaplib's state is whole between commands. Several commands may be in
    flight, so that the server works on the next chunk while this one is parsed and
    stored. A server may run them at once and interleave their responses (Dovecot does),
    so FETCH responses are told apart by UID: commands in flight never share one (``send``
    waits for the one that would); one SEARCH at a time."""

    def __init__(self, inbox: Any, client: IMAPClient) -> None:
        self.inbox = inbox
        self.client = client
        self.imap: Any = client._imap
        self.in_flight: dict[bytes, frozenset[int]] = {}  # tag -> its uids
        self.answers: dict[bytes, dict[int, dict[bytes, Any]] | BaseException] = {}
        self.data: dict[int, dict[bytes, Any]] = {}  # uid -> items read, not yet answered
        # One UID SEARCH at a time (its answer names no command): its tag and hits so far.
        self.search: bytes | None = None
        self.hits: list[int] = []
        self.found: dict[bytes, set[int] | BaseException] = {}

    def send(self, uids: Sequence[int], items: Sequence[str]) -> bytes:
        wanted = frozenset(uids)
        for earlier, others in list(self.in_flight.items()):
            if others & wanted:
                self._wait(earlier)
        tag: bytes = self.imap._new_tag()
        command = b"%s UID FETCH %s (%s)\r\n" % (tag, _uid_set(uids), " ".join(items).encode())
        self.imap.send(command)
        self.in_flight[tag] = wanted
        self.inbox.fetch_commands += 1
        return tag

    def send_search(self, criteria: str) -> bytes:
        """Send a UID SEARCH (after the one in flight, if any, is answered)."""
        if self.search is not None:
            self._wait(self.search)
        tag: bytes = self.imap._new_tag()
        self.imap.send(b"%s UID SEARCH %s\r\n" % (tag, criteria.encode()))
        self.in_flight[tag] = frozenset()
        self.search, self.hits = tag, []
        return tag

    def search_answer(self, tag: bytes) -> set[int]:
        """The UIDs a SEARCH found; raises as ``answer`` does."""
        self._wait(tag)
        found = self.found.pop(tag)
        if isinstance(found, BaseException):
            raise found
        return found

    def answer(self, tag: bytes) -> dict[int, dict[bytes, Any]]:
        """The FETCH responses of the command ``tag`` by UID; raises ``IMAPClientError``
        with the server's text when it said NO or BAD, ``IMAPClientAbortError`` when the
        connection broke or said BYE (the connection is then unusable)."""
        self._wait(tag)
        found = self.answers.pop(tag)
        if isinstance(found, BaseException):
            raise found
        return found

    def _wait(self, tag: bytes) -> None:
        while tag not in self.answers and tag not in self.found:
            if tag not in self.in_flight:
                raise ValueError(f"no FETCH {tag!r} in flight")
            self._read()

    def _read(self) -> None:
        imap = self.imap
        line: bytes = imap._get_line()
        if line.startswith(b"* "):
            pieces = [line]
            while (m := _LITERAL.search(line)) is not None:
                pieces.append(imap.read(int(m.group(1))))
                line = imap._get_line()
                pieces.append(line)
            self._untagged(pieces)
            return
        tag, _, rest = line.partition(b" ")
        uids = self.in_flight.pop(tag, None)
        if uids is None:
            raise IMAPClientAbortError(f"unexpected line from the server: {line[:80]!r}")
        imap.tagged_commands.pop(tag, None)
        status, _, text = rest.partition(b" ")
        refused = IMAPClientError(text.decode("utf-8", "replace"))
        ok = status.upper() == b"OK"
        if tag == self.search:
            self.found[tag] = set(self.hits) if ok else refused
            self.search, self.hits = None, []
            return
        found = {uid: self.data.pop(uid) for uid in uids if uid in self.data}
        self.answers[tag] = found if ok else refused

    def _untagged(self, pieces: list[bytes]) -> None:
        head = pieces[0][:40].upper()
        if head.startswith(b"* BYE"):
            raise IMAPClientAbortError(pieces[0][6:].decode("utf-8", "replace"))
        if head.startswith(b"* SEARCH"):
            if self.search is not None:
                self.hits += [int(w) for w in pieces[0][8:].split() if w.isdigit()]
            return
        if b"FETCH" not in head:
            return  # EXISTS, EXPUNGE, RECENT...: the pass works by UID, IDLE asks again
        try:
            found = fetch_items(parse_response(pieces))
        except ValueError as e:
            raise IMAPClientAbortError(f"unreadable FETCH response: {e}") from None
        if found is None:
            return
        uid = found[1].get(b"UID")
        # not ours: a flag change announced without its UID, or by another session
        if isinstance(uid, int) and any(uid in uids for uids in self.in_flight.values()):
            self.data.setdefault(uid, {}).update(found[1])


def _uid_set(uids: Sequence[int]) -> bytes:
    """``1:3,7,9:10`` for the sorted ``uids``."""
    out: list[str] = []
    start = prev = None
    for uid in sorted(uids):
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None:
            out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    if start is not None:
        out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out).encode()
