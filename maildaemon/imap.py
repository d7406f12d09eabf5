"""IMAP inboxes: connect to the server, and one read-only pass over a folder (SPEC 4).

The only module that imports imapclient. A pass never changes the mailbox: the folder is
opened with EXAMINE, everything is fetched with ``BODY.PEEK``, and no STORE, COPY, MOVE
or EXPUNGE is ever sent, so flags (``\\Seen`` among them) stay exactly as they were.

What a pass fetches, in chunks of ``CHUNK`` UIDs above the folder's last seen UID:

1. the header fields the rules read (``HEADER_FIELDS``), ``BODYSTRUCTURE``,
   ``RFC822.SIZE`` and ``INTERNALDATE``;
2. for each message, only its text parts as ``body.py`` would pick them (text/plain,
   else text/html; never an attachment): their ``.MIME`` headers and their first bytes,
   enough for ``ingest.text_cap`` of text after transfer decoding.

The header fields and the text parts become one small message for ``parse_message`` (the
same parser as Maildir and mbox, so the same mail gives the same ledger by any path); its
attachments (names and sizes) come from BODYSTRUCTURE. Each chunk is stored in one
transaction with the folder's progress (uidvalidity, last uid, highestmodseq): a crash
loses nothing and repeats nothing. HIGHESTMODSEQ is recorded only when a pass completes,
so an unchanged HIGHESTMODSEQ (or a UIDNEXT not past the last UID) means there is nothing
to fetch: a poll with no new mail costs the EXAMINE alone. A UIDVALIDITY change forgets
the progress and fetches the folder again; messages are keyed by Message-ID, so nothing is
duplicated and known messages get their new coordinates.

Connections: ``security = "tls"`` (implicit TLS, port 993), ``"starttls"`` (port 143, and
no fallback to plain text when the server does not offer STARTTLS) or ``"plain"``. Plain
text is only ever used when the config says ``security = "plain"``; to a host that is not
loopback it is allowed but logged as a warning, since the password crosses the network
readable. Certificates are verified against the system's CAs, or only against ``ca_file``
when one is given; ``verify = false`` turns verification off for that server. Passwords
come from ``password_env`` or ``password_command``, XOAUTH2 tokens from ``token_command``
before each connect (``secrets.py``); none of them is ever logged or put into an error
message.
"""

from __future__ import annotations

import contextlib
import ctypes
import imaplib
import ipaddress
import logging
import multiprocessing
import os
import re
import signal
import ssl
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.pool import Pool
from typing import Any

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from maildaemon.config import Config, ImapSettings, Inbox
from maildaemon.errors import AuthError, ImapError, ParseError
from maildaemon.ingest import POOL_THRESHOLD, Progress, SyncResult
from maildaemon.model import Message
from maildaemon.parsers import HEADER_FIELDS, parse_message
from maildaemon.parsers.body import MAX_ATTACHMENTS
from maildaemon.parsers.bodystructure import (
    Part,
    assemble,
    attachment_of,
    cut_partial,
    parts_of,
    text_limits,
)
from maildaemon.secrets import command_secret, env_secret
from maildaemon.store import Store

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl(2)
CHUNK = 250  # UIDs per FETCH and per stored batch
CONNECT_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 120.0
IDLE_SLICE_S = 0.5  # idle_check() waits this long at a time, so a stop is seen at once
IDLE_DONE_TIMEOUT_S = 10.0  # DONE unanswered this long: the connection is dead
EARLY_EMPTY_LIMIT = 2  # idle_check() back empty this often in a row, early: the socket is closed

HEADERS_ITEM = f"BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS).upper()})]"
FIRST_ITEMS = (HEADERS_ITEM, "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE")
_SERVER_TEXT = re.compile(r"^b?['\"](.*)['\"]$")
# What a broken connection or a server's refusal raises, as far as a pass is concerned.
_NETWORK_ERRORS = (IMAPClientError, imaplib.IMAP4.error, OSError, EOFError)


def _section_data(data: Mapping[bytes, Any], prefix: str) -> bytes | None:
    wanted = prefix.encode()
    for key, value in data.items():
        if isinstance(key, bytes) and key.upper().startswith(wanted):
            return bytes(value) if value is not None else None
    return None


def _server_text(error: BaseException) -> str:
    text = str(error).strip()
    m = _SERVER_TEXT.match(text)
    return m.group(1) if m else text


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- one inbox ------------------------------------------------------------------------------


class ImapInbox:
    """One configured IMAP inbox: its connection and passes over its folder.

    ``connect`` raises ``AuthError`` or ``ImapError``; ``sync`` returns a ``SyncResult``
    whose ``error`` is set when the server failed mid-pass (what was stored before stays,
    with its progress), and then drops the connection.
    """

    def __init__(
        self,
        inbox: Inbox,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
    ) -> None:
        if inbox.imap is None:
            raise ValueError(f"inbox {inbox.name!r} is not an IMAP inbox")
        self.inbox = inbox
        self.settings: ImapSettings = inbox.imap
        self.timeout = SocketTimeout(connect=connect_timeout, read=read_timeout)
        self.client: IMAPClient | None = None
        self.fetch_commands = 0  # FETCH commands sent, for tests and benchmarks
        self._idle_client: IMAPClient | None = None  # the connection IDLE was logged for
        # UIDNEXT as far as the last pass read the folder: mail announced while that pass
        # ran is answered by IMAPClient and lost to IDLE, so IDLE looks at UIDNEXT first.
        self.synced_uidnext: int | None = None
        self.polling_logged = False  # the daemon said once that this server has no IDLE

    @property
    def name(self) -> str:
        return self.inbox.name

    @property
    def folder(self) -> str:
        return self.settings.folder

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> ImapInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting ---------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        s = self.settings
        if not s.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if s.ca_file is not None:
            try:
                return ssl.create_default_context(cafile=str(s.ca_file))
            except (OSError, ssl.SSLError) as e:
                raise ImapError(
                    f"inbox '{self.name}': ca_file {s.ca_file} unreadable: {e}"
                ) from None
        return ssl.create_default_context()

    def connect(self) -> IMAPClient:
        """Open, secure and log in; ``CONDSTORE`` enabled when the server has it."""
        self.close()
        s = self.settings
        secret = self._secret()  # before the network: a missing password needs no server
        context = None if s.security == "plain" else self.ssl_context()
        if s.security == "plain" and not is_loopback(s.host):
            log.warning(
                'inbox %s: security = "plain" to %s: the password is sent unencrypted',
                self.name,
                self.where,
            )
        try:
            client = IMAPClient(
                s.host, s.port, ssl=s.security == "tls", ssl_context=context, timeout=self.timeout
            )
        except ssl.SSLCertVerificationError as e:
            raise self._untrusted(e) from None
        except ssl.SSLError as e:
            raise ImapError(f"inbox '{self.name}': TLS with {self.where} failed: {e}") from None
        except TimeoutError:
            raise ImapError(f"inbox '{self.name}': {self.where} did not answer in time") from None
        except (OSError, EOFError, imaplib.IMAP4.error) as e:
            raise ImapError(
                f"inbox '{self.name}': cannot connect to {self.where}: {_oserror(e)}"
            ) from None
        try:
            if s.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    raise ImapError(
                        f"inbox '{self.name}': {self.where} does not offer STARTTLS; use "
                        'security = "tls" (port 993), or "plain" only on a trusted network'
                    )
                client.starttls(context)
            self._login(client, secret)
            client.normalise_times = False
            if client.has_capability("CONDSTORE"):
                client.enable("CONDSTORE")
        except ssl.SSLCertVerificationError as e:
            _drop(client)
            raise self._untrusted(e) from None
        except (ImapError, AuthError):
            _drop(client)
            raise
        except _NETWORK_ERRORS as e:
            _drop(client)
            raise ImapError(f"inbox '{self.name}': {self.where}: {_oserror(e)}") from None
        self.client = client
        return client

    def _untrusted(self, e: ssl.SSLCertVerificationError) -> ImapError:
        reason = e.verify_message or "not trusted"
        return ImapError(
            f"inbox '{self.name}': certificate of {self.settings.host} not trusted ({reason}) "
            "— set ca_file or verify = false"
        )

    def _secret(self) -> str:
        s = self.settings
        if s.auth == "xoauth2":
            return command_secret(s.token_command or "", "token_command", self.name)
        if s.password_command:
            return command_secret(s.password_command, "password_command", self.name)
        return env_secret(s.password_env, self.name, s.username)

    def _login(self, client: IMAPClient, secret: str) -> None:
        s = self.settings
        if s.auth == "xoauth2":
            hint = "check token_command (an expired or revoked token?)"
        elif s.password_command:
            hint = "check password_command"
        else:
            hint = f"check {s.password_env}"
        try:
            if s.auth == "xoauth2":
                client.oauth2_login(s.username, secret)
            else:
                client.login(s.username, secret)
        except LoginError as e:
            said = _server_text(e).replace(secret, "***")
            raise AuthError(
                f"inbox '{self.name}': login refused by {self.where} ({said}) — {hint}"
            ) from None

    def close(self, timeout: float | None = None) -> None:
        """Log out (or just drop a broken connection); ``timeout`` bounds the wait for the
        server's answer (the read timeout otherwise)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                if timeout is not None:
                    client.socket().settimeout(timeout)
                client.logout()
            except Exception:  # the connection is gone already: nothing left to close
                _drop(client)

    # -- waiting for mail ---------------------------------------------------------------

    @property
    def can_idle(self) -> bool:
        """Connected to a server that has IDLE (the folder is selected by the last pass)."""
        client = self.client
        try:
            return client is not None and bool(client.has_capability("IDLE"))
        except _NETWORK_ERRORS:
            return False

    def idle(
        self,
        seconds: float,
        should_stop: Callable[[], bool],
        *,
        slice_s: float = IDLE_SLICE_S,
        done_timeout: float = IDLE_DONE_TIMEOUT_S,
    ) -> tuple[str, str | None]:
        """IDLE on the selected folder for up to ``seconds``, looking at ``should_stop``
        every ``slice_s``. Returns ``("mail", None)`` when the server announced new mail
        (EXISTS), ``("renew", None)`` when the time was up, ``("stopped", None)`` when
        ``should_stop`` said so, or ``("lost", why)`` when the connection is dead: BYE, a
        closed socket (``idle_check`` then keeps coming back empty at once), a socket error
        or DONE unanswered. A lost connection is dropped, never used again (imaplib's state
        after an abort is undefined); the next ``sync`` connects anew."""
        if self.client is None:
            return "lost", "not connected"
        client: Any = self.client
        if self._idle_client is not client:
            self._idle_client = client
            log.info("inbox %s: waiting for mail in %s with IDLE", self.name, self.folder)
        deadline = time.monotonic() + seconds
        outcome = "renew"
        early_empty = 0
        try:
            if self.synced_uidnext is not None:
                info = client.select_folder(self.folder, readonly=True)
                uidnext = _int(info.get(b"UIDNEXT"))
                if uidnext is not None and uidnext > self.synced_uidnext:
                    return "mail", None  # arrived during the last pass
            client.idle()
            while True:
                if should_stop():
                    outcome = "stopped"
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(slice_s, left)
                began = time.monotonic()
                responses = client.idle_check(timeout=wait)
                bye = _bye(responses)
                if bye is not None:
                    return self._lost(f"the server said BYE ({bye})")
                if _announces_mail(responses):
                    outcome = "mail"
                    break
                if not responses and time.monotonic() - began < wait / 2:
                    early_empty += 1
                    if early_empty >= EARLY_EMPTY_LIMIT:
                        return self._lost("the server closed the connection")
                else:
                    early_empty = 0
            sock = client.socket()
            sock.settimeout(done_timeout)
            _, responses = client.idle_done()
            sock.settimeout(self.timeout.read)
        except TimeoutError:
            return self._lost(f"no answer in {done_timeout:g}s")
        except _NETWORK_ERRORS as e:
            return self._lost(_oserror(e))
        bye = _bye(responses)
        if bye is not None:
            return self._lost(f"the server said BYE ({bye})")
        if outcome == "renew" and _announces_mail(responses):
            outcome = "mail"
        return outcome, None

    def _lost(self, why: str) -> tuple[str, str | None]:
        _drop(self.client)
        self.client = None
        return "lost", why

    # -- a pass over the folder ---------------------------------------------------------

    def sync(
        self,
        store: Store,
        *,
        text_cap: int,
        now: datetime,
        progress_factory: Callable[[int], Progress | None] | None = None,
    ) -> SyncResult:
        """Fetch and store what is new in the folder (connecting first if needed)."""
        pass_ = _Pass(self, store, text_cap, now)
        try:
            if self.client is None:
                self.connect()
            pass_.run(progress_factory)
        except (ImapError, AuthError) as e:
            self.close()
            return pass_.result(str(e))
        except _NETWORK_ERRORS as e:
            _drop(self.client)
            self.client = None
            return pass_.result(f"inbox '{self.name}': {self.where}: {_oserror(e)}")
        return pass_.result(None)

    def fetch(self, uids: Sequence[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        assert self.client is not None
        self.fetch_commands += 1
        return dict(self.client.fetch(list(uids), list(items)))


def _drop(client: IMAPClient | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):  # already closed
            client.shutdown()


def _bye(responses: Sequence[Any]) -> str | None:
    """The text of a BYE among IDLE responses, or None."""
    for r in responses:
        if isinstance(r, tuple) and r and r[0] == b"BYE":
            words = [
                w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w) for w in r[1:]
            ]
            return " ".join(words)
    return None


def _announces_mail(responses: Sequence[Any]) -> bool:
    """An EXISTS among IDLE responses: new mail in the folder."""
    return any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS" for r in responses)


def _oserror(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return _server_text(e) or type(e).__name__


@dataclass(slots=True)
class _Fetched:
    uid: int
    headers: bytes
    parts: list[Part]
    size: int
    received: datetime


class _Pass:
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
                f"{self.imap.where}: {_server_text(e)}"
            ) from None
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = _int(info.get(b"UIDNEXT"))
        modseq = _int(info.get(b"HIGHESTMODSEQ"))
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
        progress = progress_factory(len(uids)) if progress_factory and uids else None
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
        try:
            pending = self._begin(chunks[0], uidvalidity, pool)
            for i, chunk in enumerate(chunks):
                final = i == len(chunks) - 1
                top = max(chunk[-1], done_uid) if final else chunk[-1]
                # With a pool, the next chunk is fetched while this one is parsed; a
                # failure fetching it is raised only once this chunk is stored.
                following: _Chunk | None = None
                failure: BaseException | None = None
                if pool is not None and not final:
                    try:
                        following = self._begin(chunks[i + 1], uidvalidity, pool)
                    except (ImapError, *_NETWORK_ERRORS) as e:
                        failure = e
                items, bad = self._finish(pending)
                coordinates = {key: (uidvalidity, uid) for key, uid in _uids(items, bad)}
                self._store(
                    [(k, m) for k, m, _ in items],
                    [(k, reason, size) for k, reason, size, _ in bad],
                    self._progress(uidvalidity, top, modseq if final else known_modseq),
                    coordinates,
                )
                if progress is not None:
                    progress(len(chunk))
                self.imap.synced_uidnext = top + 1
                if failure is not None:
                    raise failure
                if not final:
                    pending = following or self._begin(chunks[i + 1], uidvalidity, pool)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

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

    def _begin(self, uids: list[int], uidvalidity: int, pool: Pool | None) -> _Chunk:
        """Fetch one chunk and start parsing it (in ``pool`` when there is one)."""
        fetched: list[_Fetched] = []
        bad: list[tuple[str, str, int, int]] = []
        found, failed = self._fetch(uids, FIRST_ITEMS)
        for uid, why in failed.items():
            log.warning("inbox %s: quarantined uid %s: %s", self.name, uid, why)
            bad.append((f"{uidvalidity}:{uid}", f"the server could not fetch it: {why}", 0, uid))
        for uid, data in sorted(found.items()):
            key = f"{uidvalidity}:{uid}"
            size = _int(data.get(b"RFC822.SIZE")) or 0
            headers = _section_data(data, "BODY[HEADER.FIELDS")
            try:
                parts = parts_of(data[b"BODYSTRUCTURE"])
            except (KeyError, IndexError, TypeError, ValueError) as e:
                bad.append((key, f"unreadable BODYSTRUCTURE: {type(e).__name__}", size, uid))
                continue
            if headers is None:
                bad.append((key, "the server returned no header fields", size, uid))
                continue
            fetched.append(_Fetched(uid, headers, parts, size, _received(data, self.now)))
        by_uid = {f.uid: f for f in fetched}
        plain = {f.uid: [p for p in f.parts if p.text and p.ctype == "text/plain"] for f in fetched}
        html = {f.uid: [p for p in f.parts if p.text and p.ctype == "text/html"] for f in fetched}
        # uid -> (parts to fetch, whole budget?, are they the plain parts?)
        plan = {uid: (plain[uid] or html[uid], False, bool(plain[uid])) for uid in by_uid}
        chunk = _Chunk(uidvalidity, fetched, bad, by_uid, html, plan)
        self._submit(chunk, pool)
        return chunk

    def _submit(self, chunk: _Chunk, pool: Pool | None) -> None:
        """Fetch the text parts of the chunk's plan and start parsing them."""
        requests = {uid: (parts, full) for uid, (parts, full, _) in chunk.plan.items()}
        chunk.texts = self._fetch_texts(requests)
        jobs = [
            (
                assemble(chunk.by_uid[uid].headers, chunk.texts.get(uid, ([], False))[0]),
                chunk.by_uid[uid].received,
                self.text_cap,
            )
            for uid in chunk.plan
        ]
        if pool is None or not jobs:
            chunk.parsing = [_parse_raw(*job) for job in jobs]
        else:
            chunk.parsing = pool.starmap_async(_parse_raw, jobs, chunksize=16)

    def _finish(
        self, chunk: _Chunk
    ) -> tuple[list[tuple[str, Message, int]], list[tuple[str, str, int, int]]]:
        """Collect a chunk's parse: (key, message, uid) and quarantined (key, reason, size,
        uid). The text/plain parts first (or the text/html ones when there are none), each
        up to an estimate of the bytes ``text_cap`` needs; then, for the few messages where
        that was not enough, the html parts (the plain text was blank) or the parts again up
        to all that ``body.py`` would read of them (fetched and parsed here, in-process)."""
        parsed: dict[int, tuple[Message | None, str | None]] = {}
        while chunk.plan:
            parsing = chunk.parsing
            results = parsing if isinstance(parsing, list) else parsing.get()
            again: dict[int, tuple[list[Part], bool, bool]] = {}
            for (uid, (parts, full, is_plain)), result in zip(
                chunk.plan.items(), results, strict=True
            ):
                _, cut = chunk.texts.get(uid, ([], False))
                parsed[uid] = self._complete(chunk.by_uid[uid], *result)
                msg = parsed[uid][0]
                if msg is None:
                    continue
                if is_plain and chunk.html[uid] and not msg.text:
                    again[uid] = (chunk.html[uid], False, False)
                elif cut and not full and len(msg.text.encode("utf-8")) < self.text_cap:
                    again[uid] = (parts, True, is_plain)
            chunk.plan = again
            if again:
                self._submit(chunk, None)
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

    def _fetch_texts(
        self, plan: Mapping[int, tuple[list[Part], bool]]
    ) -> dict[int, tuple[list[tuple[Part, bytes, bytes]], bool]]:
        """The (part, MIME header fields, first bytes) of the planned parts of each message,
        and whether something was left out (a part cut, or not fetched); messages that want
        the same sections are fetched together."""
        wanted: dict[int, list[tuple[Part, int]]] = {}
        groups: dict[tuple[str, ...], list[int]] = {}
        for uid, (parts, full) in plan.items():
            wanted[uid] = text_limits(parts, self.text_cap, full)
            items: list[str] = []
            for p, limit in wanted[uid]:
                if not p.top:
                    items.append(f"BODY.PEEK[{p.section}.MIME]")
                items.append(f"BODY.PEEK[{p.section}]<0.{limit}>")
            if items:
                groups.setdefault(tuple(items), []).append(uid)
        out: dict[int, tuple[list[tuple[Part, bytes, bytes]], bool]] = {}
        for items_, uids in groups.items():
            found, failed = self._fetch(uids, items_)
            for uid, why in failed.items():
                log.warning("inbox %s: uid %s: text not fetched: %s", self.name, uid, why)
                self.unfetched[uid] = why
            for uid, data in found.items():
                texts: list[tuple[Part, bytes, bytes]] = []
                cut = len(wanted[uid]) < len(plan[uid][0])
                for p, limit in wanted[uid]:
                    mime = b"" if p.top else _section_data(data, f"BODY[{p.section}.MIME]")
                    payload = _section_data(data, f"BODY[{p.section}]<")
                    if mime is not None and payload is not None:
                        cut = cut or len(payload) >= limit
                        texts.append((p, mime, cut_partial(payload, limit)))
                out[uid] = (texts, cut)
        return out

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
                return {}, {uids[0]: _server_text(e)}
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
    """One chunk between its fetch and its store: what the parse round in flight is for."""

    uidvalidity: int
    fetched: list[_Fetched]
    bad: list[tuple[str, str, int, int]]
    by_uid: dict[int, _Fetched]
    html: dict[int, list[Part]]
    # uid -> (parts to fetch, whole budget?, are they the plain parts?)
    plan: dict[int, tuple[list[Part], bool, bool]]
    texts: dict[int, tuple[list[tuple[Part, bytes, bytes]], bool]] = field(default_factory=dict)
    parsing: Any = None  # the parse results in plan order, or the pool's AsyncResult of them


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


def _int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str) and str(value).strip().isdigit():
        return int(value)
    if isinstance(value, list | tuple) and value:
        return _int(value[0])
    return None


def _received(data: Mapping[bytes, Any], fallback: datetime) -> datetime:
    moment = data.get(b"INTERNALDATE")
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


# -- the entry point of `maildaemon sync` and the daemon -------------------------------------


def sync_inbox(
    store: Store,
    config: Config,
    inbox: Inbox,
    *,
    now: datetime,
    progress_factory: Callable[[int], Progress | None] | None = None,
) -> SyncResult:
    """One pass over an IMAP inbox from the config (without re-deriving). A failure is
    recorded in the store (``status`` shows it) and returned in the result."""
    imap = ImapInbox(inbox)
    try:
        imap.connect()
    except (ImapError, AuthError) as e:
        log.warning("%s", e)
        store.record_sync(inbox.name, imap.folder, at=now, error=str(e))
        return SyncResult(inbox.name, imap.folder, 0, 0, 0, str(e))
    with imap:
        return imap.sync(
            store, text_cap=config.ingest.text_cap, now=now, progress_factory=progress_factory
        )
