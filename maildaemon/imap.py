"""IMAP inboxes: connect to the server, and one read-only pass over a folder (SPEC 4).

With ``imap_pass`` and ``imap_wire``, the only modules that import imapclient. A pass
never changes the mailbox: the folder is opened with EXAMINE, everything is fetched with
``BODY.PEEK``, and no STORE, COPY, MOVE or EXPUNGE is ever sent, so flags (``\\Seen``
among them) stay exactly as they were.

What a pass fetches and how it is stored is in ``imap_pass.py``; ``imap_wire.py`` sends
its FETCH and SEARCH commands and reads the answers. Each chunk is stored in one
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
message. Every connection has TCP keepalive (``KEEPALIVE_*``), so a peer gone silent ends
even a long IDLE with an error; the daemon also renews IDLE often enough to find out a
silent connection when DONE goes unanswered (``daemon.IDLE_RENEW``).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from maildaemon.config import Config, ImapSettings, Inbox
from maildaemon.errors import AuthError, ImapError
from maildaemon.imap_pass import NETWORK_ERRORS, Pass, int_or_none, server_text
from maildaemon.imap_wire import Wire
from maildaemon.ingest import Progress, SyncResult
from maildaemon.secrets import command_secret, env_secret
from maildaemon.store import Store
from maildaemon.tls import client_context, is_loopback

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 120.0
IDLE_SLICE_S = 0.5  # idle_check() waits this long at a time, so a stop is seen at once
IDLE_DONE_TIMEOUT_S = 10.0  # DONE unanswered this long: the connection is dead
# TCP keepalive on every connection: a peer that stopped answering (a dead NAT entry, a
# host gone) is found out after KEEPALIVE_IDLE_S + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S
# of silence, even in a long IDLE; the next read then fails and the daemon reconnects.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT = 4
EARLY_EMPTY_LIMIT = 2  # idle_check() back empty this often in a row, early: the socket is closed


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
        self._wire: Wire | None = None

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
        try:
            return client_context(s.ca_file, s.verify)
        except (OSError, ssl.SSLError) as e:
            raise ImapError(f"inbox '{self.name}': ca_file {s.ca_file} unreadable: {e}") from None

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
        _keepalive(client.socket())
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
        except NETWORK_ERRORS as e:
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
            said = server_text(e).replace(secret, "***")
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
        except NETWORK_ERRORS:
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
                uidnext = int_or_none(info.get(b"UIDNEXT"))
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
        except NETWORK_ERRORS as e:
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
        pass_ = Pass(self, store, text_cap, now)
        try:
            if self.client is None:
                self.connect()
            pass_.run(progress_factory)
        except (ImapError, AuthError) as e:
            self.close()
            return pass_.result(str(e))
        except NETWORK_ERRORS as e:
            _drop(self.client)
            self.client = None
            return pass_.result(f"inbox '{self.name}': {self.where}: {_oserror(e)}")
        return pass_.result(None)

    def fetch(self, uids: Sequence[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        """One UID FETCH and its answer (``imap_wire.Wire``): {uid: {item: value}}."""
        wire = self.wire()
        return wire.answer(wire.send(uids, items))

    def wire(self) -> Wire:
        """The FETCH wire of the current connection."""
        assert self.client is not None
        if self._wire is None or self._wire.client is not self.client:
            self._wire = Wire(self, self.client)
        return self._wire


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive on ``sock``, with this module's timing where the system lets it be set."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


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
    return server_text(e) or type(e).__name__


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
