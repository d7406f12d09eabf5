"""One read-only pass over an IMAP folder (SPEC 4): what is fetched, in which order, and
how the answers become stored messages. `imap.ImapInbox.sync` runs it on its connection.

What a pass fetches, in chunks of ``CHUNK`` UIDs above the folder's last seen UID:

1. the header fields the rules read (``FETCHED_FIELDS``), the structure (``BODY``),
   ``RFC822.SIZE``, ``INTERNALDATE`` and the first bytes of section 1 (``first_bytes``:
   for most mail, a single text part, all of its text in this one FETCH);
2. for the messages that need more: the BODYSTRUCTURE of a multipart (its dispositions
   tell attachments from texts), the text parts as ``body.py`` would pick them (text/plain,
   else text/html; never an attachment) with their ``.MIME`` fields and as many bytes as
   ``ingest.text_cap`` needs after transfer decoding (an estimate, then more if the text
   came out short), the content fields of a single part when its structure cannot give
   them, and the rare header fields (``RARE_FIELDS``) of the messages a SEARCH finds
   them in. All of these go out before any answer is read.

Answers are read off the socket by ``imap_wire.Wire``; the next chunk's FETCH is in flight
while this one is parsed in a pool of worker processes and the one before is stored. The
header fields and the text parts become one small message for ``parse_message`` (the same
parser as Maildir and mbox, so the same mail gives the same ledger by any path); its
attachments (names and sizes) come from the structure. Each chunk is stored in one
transaction with the folder's progress (uidvalidity, last uid, highestmodseq).
"""

from __future__ import annotations

import contextlib
import ctypes
import imaplib
import logging
import multiprocessing
import os
import re
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.pool import Pool
from typing import TYPE_CHECKING, Any

from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from maildaemon.errors import ImapError, ParseError
from maildaemon.imap_wire import Wire
from maildaemon.ingest import POOL_THRESHOLD, Progress, SyncResult
from maildaemon.model import Message
from maildaemon.parsers import HEADER_FIELDS, parse_message
from maildaemon.parsers.body import MAX_ATTACHMENTS
from maildaemon.parsers.bodystructure import (
    Part,
    assemble,
    attachment_of,
    content_fields,
    cut_partial,
    internaldate,
    is_multipart,
    parts_of,
    text_limits,
)
from maildaemon.store import Store

if TYPE_CHECKING:
    from maildaemon.imap import ImapInbox

log = logging.getLogger("maildaemon.imap")

_PR_SET_PDEATHSIG = 1  # prctl(2)
_SERVER_TEXT = re.compile(r"^b?['\"](.*)['\"]$")
# What a broken connection or a server's refusal raises, as far as a pass is concerned.
NETWORK_ERRORS = (IMAPClientError, imaplib.IMAP4.error, OSError, EOFError)


def server_text(error: BaseException) -> str:
    text = str(error).strip()
    m = _SERVER_TEXT.match(text)
    return m.group(1) if m else text


CHUNK = 250  # UIDs per FETCH and per stored batch
PARSE_AHEAD = 1  # chunks the parse pool has in hand while the parent stores another
# Messages per task sent to a parse worker: fewer, larger writes to the pool's pipe cost
# the parent's pool threads less CPU; larger still would cost each worker memory.
PARSE_BATCH = 32


# The header fields fetched: those the parser reads, less the ones it has no use for
# (Thread-Topic, List-Post, MIME-Version) and the content fields. Those of a single-part
# message are rebuilt from its structure (``content_fields``) or fetched with its text
# when they cannot be; a multipart's own are never read (its parts' MIME fields are).
# The server echoes the list of names in every answer, so fields most mail lacks are
# fetched only from the messages a SEARCH finds them in.
_NOT_FETCHED = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "thread-topic", "list-post"}
)
RARE_FIELDS = ("Reply-To", "Thread-Index", "Auto-Submitted", "X-Autoreply", "X-Autorespond")
FETCHED_FIELDS = tuple(
    name
    for name in HEADER_FIELDS
    if name.lower() not in _NOT_FETCHED | {rare.lower() for rare in RARE_FIELDS}
)
HEADERS_ITEM = f"BODY.PEEK[HEADER.FIELDS ({' '.join(FETCHED_FIELDS).upper()})]"
CONTENT_KEY = "BODY[HEADER.FIELDS (CONTENT-TYPE CONTENT-TRANSFER-ENCODING)]"
CONTENT_ITEM = "BODY.PEEK" + CONTENT_KEY[4:]
RARE_KEY = f"BODY[HEADER.FIELDS ({' '.join(RARE_FIELDS).upper()})]"
RARE_ITEM = "BODY.PEEK" + RARE_KEY[4:]


def first_bytes(text_cap: int) -> int:
    """Bytes of section 1 fetched with the header fields: all of most messages' text (a
    single part, or a multipart's first), before the structure says what it is."""
    return text_cap + text_cap // 32 + 128


def first_items(text_cap: int) -> tuple[str, ...]:
    """The first FETCH of a chunk: header fields, structure (BODY: BODYSTRUCTURE's
    extension fields are fetched for multiparts alone), size, arrival, and section 1."""
    return (
        HEADERS_ITEM,
        "BODY",
        "RFC822.SIZE",
        "INTERNALDATE",
        f"BODY.PEEK[1]<0.{first_bytes(text_cap)}>",
    )


def _section_data(data: Mapping[bytes, Any], prefix: str) -> bytes | None:
    wanted = prefix.encode()
    for key, value in data.items():
        if isinstance(key, bytes) and key.upper().startswith(wanted):
            return bytes(value) if value is not None else None
    return None


def _rare_criteria(uids: Sequence[int]) -> str:
    """SEARCH criteria for the messages among ``uids`` with any of RARE_FIELDS (by their
    range: short, and only these or no messages are in it)."""
    any_of = " ".join(f'HEADER {name.upper()} ""' for name in RARE_FIELDS)
    return f"UID {min(uids)}:{max(uids)} {'OR ' * (len(RARE_FIELDS) - 1)}{any_of}"


@dataclass(slots=True)
class _Text:
    """A text part of a message and its first bytes, as fetched so far."""

    part: Part
    limit: int  # the bytes wanted of it
    mime: bytes | None = None  # its MIME header fields (b"" at the top level; None: not yet)
    raw: bytes = b""
    whole: bool = False  # raw is all of the part

    def payload(self) -> bytes:
        """What to parse: a part cut short ends at its last line end."""
        return self.raw if self.whole else cut_partial(self.raw, len(self.raw))


@dataclass(slots=True)
class _Fetched:
    uid: int
    headers: bytes
    body: Any  # BODY, or BODYSTRUCTURE for a multipart (its dispositions tell attachments)
    size: int
    received: datetime
    first: bytes | None  # BODY[1]<0.FIRST_BYTES>, fetched with the header fields
    parts: list[Part] = field(default_factory=list)
    html: list[Part] = field(default_factory=list)
    texts: list[_Text] = field(default_factory=list)
    plain: bool = True  # the texts are the text/plain parts (else the html ones)
    full: bool = False  # the texts are wanted up to all that body.py reads of them
    content: bool = False  # the content fields a single part needs are in ``headers``
    rare: bool = False  # the RARE_FIELDS it has are in ``headers``


class Pass:
    """One pass over one folder; keeps what it stored, so a failure still reports it."""

    def __init__(self, imap: ImapInbox, store: Store, text_cap: int, now: datetime) -> None:
        self.imap = imap
        self.store = store
        self.text_cap = text_cap
        self.now = now
        self.name = imap.name
        self.folder = imap.folder
        self.shared = imap.inbox.role != "sent"
        self.seen = self.quarantined = 0
        self.fresh: dict[str, Message] = {}
        self.located: set[str] = set()
        self.unfetched: dict[int, str] = {}  # uid -> why the server did not send its text
        self.progress: Progress | None = None
        self.rare: set[int] = set()  # uids of messages with one of RARE_FIELDS

    def result(self, error: str | None) -> SyncResult:
        if error is None:
            self.store.record_sync(self.name, self.folder, at=self.now)
        else:
            log.warning("%s", error)
            self.store.record_sync(self.name, self.folder, at=self.now, error=error)
        return SyncResult(
            self.name,
            self.folder,
            self.seen,
            len(self.fresh),
            self.quarantined,
            error,
            fresh=self.fresh,
            located=frozenset(self.located),
        )

    def run(self, progress_factory: Callable[[int], Progress | None] | None) -> None:
        client = self.imap.client
        assert client is not None
        try:
            info = client.select_folder(self.folder, readonly=True)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as e:
            raise ImapError(
                f"inbox '{self.name}': cannot open folder {self.folder!r} on "
                f"{self.imap.where}: {server_text(e)}"
            ) from None
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int_or_none(info.get(b"UIDNEXT"))
        modseq = int_or_none(info.get(b"HIGHESTMODSEQ"))
        state = self.store.source_state(self.name, self.folder) or {}
        last = int(state.get("last_uid") or 0)
        known_modseq = state.get("highestmodseq")
        if state.get("uidvalidity") not in (None, uidvalidity):
            log.warning(
                "inbox %s: folder %s: UIDVALIDITY changed from %s to %s; reading it again "
                "(known messages are matched by Message-ID)",
                self.name,
                self.folder,
                state["uidvalidity"],
                uidvalidity,
            )
            self.store.reset_source(self.name, self.folder, uidvalidity)
            last, known_modseq = 0, None
        elif state.get("uidvalidity") == uidvalidity and (
            (modseq is not None and modseq == known_modseq)
            or (uidnext is not None and uidnext <= last + 1)
        ):
            if modseq != known_modseq:  # flags changed, nothing new: remember the modseq
                self._store([], [], {"highestmodseq": modseq}, {})
            log.debug("inbox %s: folder %s: nothing new", self.name, self.folder)
            self.imap.synced_uidnext = max(last + 1, uidnext or 0)
            return
        uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
        self.progress = progress_factory(len(uids)) if progress_factory and uids else None
        done_uid = max(last, (uidnext or 1) - 1)
        if not uids:
            self._store([], [], self._progress(uidvalidity, done_uid, modseq), {})
            self.imap.synced_uidnext = done_uid + 1
            return
        chunks = [uids[start : start + CHUNK] for start in range(0, len(uids), CHUNK)]
        workers = os.cpu_count() or 1
        pool: Pool | None = None
        if workers > 1 and len(uids) > POOL_THRESHOLD:
            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_init_worker, initargs=(os.getpid(),)
            )
        wire = self.imap.wire()
        first = first_items(self.text_cap)
        # The next chunk's FETCH is always in flight while this one is read, and the pool
        # parses up to PARSE_AHEAD chunks while the parent stores the one before them.
        parsing: deque[tuple[_Chunk, int, bool]] = deque()

        def complete(until: int) -> None:
            while len(parsing) > until:
                self._complete_chunk(*parsing.popleft(), uidvalidity, modseq, known_modseq)

        try:
            search, tag = wire.send_search(_rare_criteria(chunks[0])), wire.send(chunks[0], first)
            for i, chunk in enumerate(chunks):
                final = i == len(chunks) - 1
                top = max(chunk[-1], done_uid) if final else chunk[-1]
                try:
                    self.rare |= self._rare(wire, search, chunk)
                    found, failed = self._answer(wire, tag, chunk, first)
                    if not final:
                        search = wire.send_search(_rare_criteria(chunks[i + 1]))
                        tag = wire.send(chunks[i + 1], first)
                    parsing.append((self._begin(found, failed, uidvalidity, pool), top, final))
                except (ImapError, *NETWORK_ERRORS):
                    complete(0)  # what was fetched before is kept
                    raise
                complete(PARSE_AHEAD if pool is not None else 0)
            complete(0)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

    def _rare(self, wire: Wire, search: bytes, uids: list[int]) -> set[int]:
        """Which of ``uids`` have any of RARE_FIELDS, by the SEARCH sent with their
        FETCH (all of them, if the server cannot tell: those fields are then fetched
        from every message)."""
        try:
            return wire.search_answer(search) & set(uids)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as e:
            log.debug("inbox %s: SEARCH HEADER refused (%s)", self.name, server_text(e))
            return set(uids)

    def _complete_chunk(
        self,
        chunk: _Chunk,
        top: int,
        final: bool,
        uidvalidity: int,
        modseq: int | None,
        known_modseq: int | None,
    ) -> None:
        items, bad = self._finish(chunk)
        coordinates = {key: (uidvalidity, uid) for key, uid in _uids(items, bad)}
        self._store(
            [(k, m) for k, m, _ in items],
            [(k, reason, size) for k, reason, size, _ in bad],
            self._progress(uidvalidity, top, modseq if final else known_modseq),
            coordinates,
        )
        if self.progress is not None:
            self.progress(len(chunk.fetched) + len(chunk.bad))
        self.imap.synced_uidnext = top + 1

    @staticmethod
    def _progress(uidvalidity: int, last_uid: int, modseq: int | None) -> dict[str, Any]:
        return {"uidvalidity": uidvalidity, "last_uid": last_uid, "highestmodseq": modseq}

    def _store(
        self,
        items: list[tuple[str, Message]],
        bad: list[tuple[str, str, int]],
        progress: dict[str, Any],
        coordinates: dict[str, tuple[int, int]],
    ) -> None:
        added = set(
            self.store.add_batch(
                self.name,
                self.folder,
                shared=self.shared,
                items=items,
                quarantined=bad,
                seen_at=self.now,
                progress=progress,
                coordinates=coordinates,
            )
        )
        self.seen += len(items) + len(bad)
        self.quarantined += len(bad)
        for _, m in items:
            if m.message_id in added:
                self.fresh[m.message_id] = replace(m, text="", reply_text="")
            else:
                self.located.add(m.message_id)

    # -- fetching and parsing one chunk -------------------------------------------------

    def _answer(
        self, wire: Wire, tag: bytes, uids: list[int], items: Sequence[str]
    ) -> tuple[dict[int, dict[bytes, Any]], dict[int, str]]:
        """The answer of a FETCH sent ahead; a NO is tried again message by message."""
        try:
            return wire.answer(tag), {}
        except IMAPClientAbortError:
            raise
        except IMAPClientError as e:
            if len(uids) == 1:
                return {}, {uids[0]: server_text(e)}
        return self._fetch(uids, items)

    def _begin(
        self,
        found: dict[int, dict[bytes, Any]],
        failed: dict[int, str],
        uidvalidity: int,
        pool: Pool | None,
    ) -> _Chunk:
        """Read one chunk's first FETCH, fetch what its messages need besides (the
        structure of multiparts, content fields, text parts) and start parsing it (in
        ``pool`` when there is one)."""
        fetched: list[_Fetched] = []
        bad: list[tuple[str, str, int, int]] = []
        for uid, why in failed.items():
            log.warning("inbox %s: quarantined uid %s: %s", self.name, uid, why)
            bad.append((f"{uidvalidity}:{uid}", f"the server could not fetch it: {why}", 0, uid))
        multipart: list[int] = []
        for uid, data in sorted(found.items()):
            size = int_or_none(data.get(b"RFC822.SIZE")) or 0
            headers = _section_data(data, "BODY[HEADER.FIELDS")
            body = data.get(b"BODY")
            if headers is None or body is None:
                why = "header fields" if headers is None else "structure"
                bad.append((f"{uidvalidity}:{uid}", f"the server returned no {why}", size, uid))
                continue
            received = _received(data, self.now)
            f = _Fetched(uid, headers, body, size, received, _section_data(data, "BODY[1]<"))
            fetched.append(f)
            if is_multipart(body):
                multipart.append(uid)
        if multipart:  # BODY has no dispositions: an attachment and a text look the same
            structures, lost = self._fetch(multipart, ["BODYSTRUCTURE"])
            for f in fetched:
                if f.uid in multipart:
                    f.body = structures.get(f.uid, {}).get(b"BODYSTRUCTURE")
                    if f.uid in lost:
                        self.unfetched[f.uid] = lost[f.uid]
        chunk = _Chunk(uidvalidity, [], bad)
        for f in fetched:
            key = f"{uidvalidity}:{f.uid}"
            try:
                f.parts = parts_of(f.body)
            except (IndexError, TypeError, ValueError) as e:
                bad.append((key, f"unreadable BODYSTRUCTURE: {type(e).__name__}", f.size, f.uid))
                continue
            plain = [p for p in f.parts if p.text and p.ctype == "text/plain"]
            f.html = [p for p in f.parts if p.text and p.ctype == "text/html"]
            self._plan(f, plain or f.html, bool(plain), full=False)
            chunk.fetched.append(f)
        self._fetch_texts(chunk.fetched)
        self._submit(chunk, chunk.fetched, pool)
        return chunk

    def _plan(self, f: _Fetched, parts: list[Part], plain: bool, *, full: bool) -> None:
        """The texts a message wants: its plain parts (or html ones), each up to an
        estimate of what ``text_cap`` needs, or up to all body.py reads when ``full``."""
        have = {t.part.section: t for t in f.texts} if f.plain == plain else {}
        f.plain, f.full = plain, full
        f.texts = []
        for p, limit in text_limits(parts, self.text_cap, full):
            text = have.get(p.section) or _Text(p, limit, b"" if p.top else None)
            text.limit = limit
            if p.section == "1" and f.first is not None and not text.raw:
                text.raw = f.first
                text.whole = len(f.first) < first_bytes(self.text_cap)
            if len(text.raw) >= p.size:
                text.whole = True
            f.texts.append(text)

    def _fetch_texts(self, fetched: Sequence[_Fetched]) -> None:
        """Fetch what the texts of ``fetched`` lack (MIME header fields, more bytes), and
        the content fields of single-part messages that the structure cannot give: one
        FETCH for all messages that want the same items, all sent before any is read."""
        groups: dict[tuple[str, ...], list[int]] = {}
        by_uid = {f.uid: f for f in fetched}
        for f in fetched:
            items: list[str] = []
            if f.uid in self.rare and not f.rare:
                f.rare = True
                items.append(RARE_ITEM)
            if not f.content and any(t.part.top for t in f.texts):
                f.content = True  # a single part's own fields, read with the text
                rebuilt = content_fields(f.body)
                if rebuilt is None or any(t.part.section == "TEXT" for t in f.texts):
                    items.append(CONTENT_ITEM)
                else:
                    f.headers = _with_fields(f.headers, rebuilt)
            for t in f.texts:
                if t.mime is None:
                    items.append(f"BODY.PEEK[{t.part.section}.MIME]")
                if not t.whole and len(t.raw) < t.limit:
                    items.append(
                        f"BODY.PEEK[{t.part.section}]<{len(t.raw)}.{t.limit - len(t.raw)}>"
                    )
            if items:
                groups.setdefault(tuple(items), []).append(f.uid)
        if not groups:
            return
        wire = self.imap.wire()
        sent = [(wanted, uids, wire.send(uids, wanted)) for wanted, uids in groups.items()]
        for wanted, uids, tag in sent:
            found, failed = self._answer(wire, tag, uids, wanted)
            for uid, why in failed.items():
                log.warning("inbox %s: uid %s: text not fetched: %s", self.name, uid, why)
                self.unfetched[uid] = why
            for uid, data in found.items():
                f = by_uid[uid]
                if RARE_ITEM in wanted:
                    f.headers = _with_fields(f.headers, _section_data(data, RARE_KEY) or b"")
                if CONTENT_ITEM in wanted:
                    f.headers = _with_fields(f.headers, _section_data(data, CONTENT_KEY) or b"")
                for t in f.texts:
                    if t.mime is None:
                        t.mime = _section_data(data, f"BODY[{t.part.section}.MIME]")
                    start = len(t.raw)
                    if not t.whole and start < t.limit:
                        more = _section_data(data, f"BODY[{t.part.section}]<{start}>")
                        if more is not None:
                            t.raw += more
                            t.whole = len(more) < t.limit - start or len(t.raw) >= t.part.size

    def _submit(self, chunk: _Chunk, fetched: Sequence[_Fetched], pool: Pool | None) -> None:
        """Start parsing ``fetched`` (their texts as far as fetched)."""
        jobs = [
            (
                assemble(
                    f.headers,
                    [(t.part, t.mime, t.payload()) for t in f.texts if t.mime is not None],
                ),
                f.received,
                self.text_cap,
            )
            for f in fetched
        ]
        chunk.round = list(fetched)
        if pool is None or not jobs:
            chunk.parsing = [_parse_raw(*job) for job in jobs]
        else:
            chunk.parsing = pool.starmap_async(_parse_raw, jobs, chunksize=PARSE_BATCH)

    def _finish(
        self, chunk: _Chunk
    ) -> tuple[list[tuple[str, Message, int]], list[tuple[str, str, int, int]]]:
        """Collect a chunk's parse: (key, message, uid) and quarantined (key, reason, size,
        uid). For the few messages where the estimate was not enough, parse again (here,
        in-process) with more: the html parts when the plain text was blank, or the texts
        up to all that ``body.py`` would read of them."""
        parsed: dict[int, tuple[Message | None, str | None]] = {}
        while chunk.round:
            parsing = chunk.parsing
            results = parsing if isinstance(parsing, list) else parsing.get()
            again: list[_Fetched] = []
            for f, result in zip(chunk.round, results, strict=True):
                parsed[f.uid] = self._complete(f, *result)
                msg = parsed[f.uid][0]
                if msg is None:
                    continue
                if f.plain and f.html and not msg.text:
                    self._plan(f, f.html, False, full=False)
                    again.append(f)
                elif not f.full and len(msg.text.encode("utf-8")) < self.text_cap:
                    wanted = [t.part for t in f.texts]
                    kind = "text/plain" if f.plain else "text/html"
                    every = [p for p in f.parts if p.text and p.ctype == kind]
                    if len(wanted) < len(every) or not all(t.whole for t in f.texts):
                        self._plan(f, every, f.plain, full=True)
                        again.append(f)
            chunk.round = []
            if again:
                self._fetch_texts(again)
                self._submit(chunk, again, None)
        bad = chunk.bad
        items: list[tuple[str, Message, int]] = []
        for f in chunk.fetched:
            key = f"{chunk.uidvalidity}:{f.uid}"
            msg, reason = parsed[f.uid]
            if msg is None:
                log.warning("inbox %s: quarantined uid %s: %s", self.name, f.uid, reason)
                bad.append((key, reason or "unparseable", f.size, f.uid))
            else:
                items.append((key, msg, f.uid))
        return items, bad

    def _fetch(
        self, uids: list[int], items: Sequence[str]
    ) -> tuple[dict[int, dict[bytes, Any]], dict[int, str]]:
        """FETCH, and what failed with the server's reason: a NO for the batch (a message
        the server cannot read) is tried again message by message, so one bad message
        never blocks the folder. (A server that drops the connection instead fails the
        pass; BINARY.SIZE is not asked for that reason: Dovecot 2.3 disconnects on a
        broken base64 part.)"""
        try:
            return self.imap.fetch(uids, items), {}
        except IMAPClientAbortError:
            raise
        except IMAPClientError as e:
            if len(uids) == 1:
                return {}, {uids[0]: server_text(e)}
        found: dict[int, dict[bytes, Any]] = {}
        failed: dict[int, str] = {}
        for uid in uids:
            got, lost = self._fetch([uid], items)
            found.update(got)
            failed.update(lost)
        return found, failed

    def _complete(
        self, f: _Fetched, msg: Message | None, reason: str | None, trace: str | None
    ) -> tuple[Message | None, str | None]:
        """What ``_parse_raw`` made of a message, with what only the fetch knows."""
        if trace is not None:
            log.error("inbox %s: parser failed on uid %s\n%s", self.name, f.uid, trace)
        if msg is None:
            return None, reason
        if f.uid in self.unfetched:
            defect = f"text: the server could not send it ({self.unfetched[f.uid]})"
            msg = replace(msg, defects=(*msg.defects, defect))
        attachments = [attachment_of(p) for p in f.parts if not p.text][:MAX_ATTACHMENTS]
        return replace(msg, attachments=tuple(attachments), size=f.size), None


@dataclass(slots=True)
class _Chunk:
    """One chunk between its fetch and its store: the parse round in flight."""

    uidvalidity: int
    fetched: list[_Fetched]
    bad: list[tuple[str, str, int, int]]
    round: list[_Fetched] = field(default_factory=list)  # what ``parsing`` parses
    parsing: Any = None  # the parse results in round order, or the pool's AsyncResult


def _with_fields(headers: bytes, fields: bytes) -> bytes:
    """The header fields block (which ends with a blank line) with ``fields`` added."""
    block = headers.rstrip(b"\r\n")
    fields = fields.rstrip(b"\r\n")
    return (block + b"\r\n" if block else b"") + (fields + b"\r\n" if fields else b"") + b"\r\n"


def _init_worker(parent: int) -> None:
    """A parse worker dies with its parent, even one killed with SIGKILL (Linux: its
    siblings hold the task pipe open, so it would wait for work forever), and quietly at a
    write to a parent gone (no BrokenPipeError traceback in the log); Ctrl-C is for the
    parent, which terminates the pool."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # no prctl (not Linux): the pipe rule above
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)


def _parse_raw(
    raw: bytes, received: datetime, text_cap: int
) -> tuple[Message | None, str | None, str | None]:
    """Parse one assembled message (in a worker process or inline: the same either way):
    (message, quarantine reason, traceback of a parser bug)."""
    try:
        return parse_message(raw, received_at=received, text_cap=text_cap), None, None
    except ParseError as e:
        return None, str(e), None
    except Exception as e:  # a parser bug must not stop the sync: quarantine, go on
        return None, f"parser error: {type(e).__name__}: {e}", traceback.format_exc()


def int_or_none(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str) and str(value).strip().isdigit():
        return int(value)
    if isinstance(value, list | tuple) and value:
        return int_or_none(value[0])
    return None


def _received(data: Mapping[bytes, Any], fallback: datetime) -> datetime:
    moment = internaldate(data.get(b"INTERNALDATE"))
    if not isinstance(moment, datetime):
        return fallback
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _uids(
    items: list[tuple[str, Message, int]], bad: list[tuple[str, str, int, int]]
) -> Iterator[tuple[str, int]]:
    for key, _, uid in items:
        yield key, uid
    for key, _, _, uid in bad:
        yield key, uid
