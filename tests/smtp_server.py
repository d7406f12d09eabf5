"""A real SMTP server on loopback for the delivery tests (NOTES.md, "SMTP in tests").

aiosmtpd's ``Controller`` runs the server on a thread of its own, on a free port of
127.0.0.1 picked first (port 0 does not work with its readiness check). Variants:
``security = "plain"``, ``"starttls"`` (STARTTLS offered and required before MAIL) or
``"tls"`` (implicit TLS), with a self-signed certificate for 127.0.0.1 and localhost that
``ca_file`` trusts (made once per session with openssl, as tests/imap_server.py does); and
``auth = True`` for AUTH LOGIN/PLAIN with ``USERNAME``/``PASSWORD`` (MAIL refused before a
login, offered on plain text too: it is loopback).

What the tests steer and read:

- ``messages``: every message received, in order (``Received``); ``wait_for(n)``;
- ``stop()`` / ``start()``: SMTP down and back, on the same port;
- ``cut_off_after_data = True``: the message is received and recorded, then the connection
  is dropped without an answer, as a transaction cut off after DATA;
- ``refuse_recipients``: addresses RCPT TO answers with 550;
- ``logins``: the usernames that logged in;
- ``delivery(**overrides)``: a ``config.Delivery`` that points at this server.

Usage::

    def test_sends(smtp_server):
        deliver(smtp_server.delivery(), raw, "md@example.com", ["a@example.com"], "n")
        (got,) = smtp_server.wait_for(1)
        assert got.message["Subject"] == "Hello"

    def test_tls(smtp_server_factory):
        server = smtp_server_factory(security="tls", auth=True)
        deliver(server.delivery(username=USERNAME, password_env="SMTP_PW"), ...)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imap_server import free_port

from maildaemon.config import Delivery, SmtpSettings

USERNAME = "digest@example.com"
PASSWORD = "smtp-pw-s3cr3t"
SECURITIES = ("plain", "starttls", "tls")

# aiosmtpd logs every command at INFO on "mail.log"; the tests' own logs are what matter.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Received:
    """One message as the server received it."""

    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes  # as received, after dot-unstuffing: CRLF line ends
    message: Message  # raw parsed with email.policy.default, with LF line ends (an EmailMessage)
    encrypted: bool  # it came over TLS (implicit or after STARTTLS)
    login: str | None  # the username the client logged in as


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for localhost and 127.0.0.1: ``cert`` is also the CA."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # verifies no client certificate
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(folder: Path) -> Certificate:
    """The openssl command of tests/imap_server.py; skips (fails under CI) without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        reason = "openssl not installed: the SMTP TLS tests need it to make a certificate"
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI=true: {reason}")
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    cert = Certificate(folder / "smtp-cert.pem", folder / "smtp-key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(cert.key), "-out", str(cert.cert),
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def _login_of(session: Session) -> str | None:
    data = session.auth_data
    if session.authenticated and isinstance(data, LoginPassword):
        return data.login.decode("utf-8", "replace")
    return None


class _Handler:
    """aiosmtpd's handler hooks; they record and steer, the server object owns the state."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        while self.server.hold:  # a client stuck mid-transaction (the test kills it)
            self.server.holding.set()
            await asyncio.sleep(0.02)
        if address.lower() in {a.lower() for a in self.server.refuse_recipients}:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        self.server._record(
            Received(
                envelope_from=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                raw=raw,
                message=email.message_from_bytes(
                    raw.replace(b"\r\n", b"\n"), policy=email.policy.default
                ),
                encrypted=bool(smtp.transport and smtp.transport.get_extra_info("ssl_object")),
                login=_login_of(session),
            )
        )
        if self.server.cut_off_after_data and smtp.transport is not None:
            smtp.transport.close()  # no reply: the client waits for one and sees EOF
            await asyncio.Event().wait()  # until connection_lost() cancels this handler
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login = data.login.decode("utf-8", "replace")
            if login == USERNAME and data.password.decode("utf-8", "replace") == PASSWORD:
                self.server.logins.append(login)
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """One aiosmtpd server on 127.0.0.1; see the module docstring."""

    host = "127.0.0.1"

    def __init__(
        self, security: str = "plain", auth: bool = False, certificate: Certificate | None = None
    ) -> None:
        if security not in SECURITIES:
            raise ValueError(f"security must be one of {SECURITIES}")
        if security != "plain" and certificate is None:
            raise ValueError(f"security = {security!r} needs a certificate")
        self.security = security
        self.auth = auth
        self.certificate = certificate
        self.port = free_port()
        self.messages: list[Received] = []
        self.logins: list[str] = []
        self.refuse_recipients: set[str] = set()
        self.cut_off_after_data = False
        self.hold = False  # True: RCPT TO gets no answer until it is False again
        self.holding = threading.Event()  # set once a client is held
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    @property
    def ca_file(self) -> Path | None:
        return self.certificate.cert if self.certificate else None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen (again) on the same port; a no-op when running."""
        if self._controller is not None:
            return
        handler = _Handler(self)
        kwargs: dict[str, Any] = {"server_hostname": "localhost", "auth_require_tls": False}
        if self.auth:
            kwargs["authenticator"] = handler.authenticate
        if self.certificate is not None and self.security == "tls":
            kwargs["ssl_context"] = self.certificate.server_context()
        elif self.certificate is not None and self.security == "starttls":
            kwargs["tls_context"] = self.certificate.server_context()
            kwargs["require_starttls"] = True
        # A new Controller each time: stop() closes its event loop for good.
        controller = Controller(handler, hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening (connection refused from now on); a no-op when stopped."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """The first ``n`` messages, once that many arrived; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(
                    f"expected {n} message(s) within {timeout:g} s, got {len(self.messages)}"
                )
            return list(self.messages[:n])

    def _record(self, received: Received) -> None:
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()

    def delivery(self, **overrides: Any) -> Delivery:
        """A ``Delivery`` for this server: its security, ``ca_file`` trusted; any
        ``SmtpSettings`` field can be overridden (``username``, ``password_env``, ``verify``)."""
        settings = SmtpSettings(
            host=self.host,
            port=self.port,
            security=self.security,
            username=None,
            password_env=None,
            password_command=None,
            sender="maildaemon@example.com",
            ca_file=self.ca_file,
        )
        return Delivery("smtp", smtp=replace(settings, **overrides))


@pytest.fixture(scope="session")
def smtp_certificate() -> Iterator[Certificate]:
    """A self-signed certificate for the session (made on first use)."""
    folder = Path(tempfile.mkdtemp(prefix="maildaemon-smtp-"))
    try:
        yield make_certificate(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def smtp_server_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., SmtpServer]]:
    """Start servers: ``smtp_server_factory(security="tls", auth=True)``; all stopped after
    the test."""
    started: list[SmtpServer] = []

    def make(security: str = "plain", auth: bool = False) -> SmtpServer:
        certificate = None
        if security != "plain":
            certificate = request.getfixturevalue("smtp_certificate")
        server = SmtpServer(security, auth, certificate)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """A running plain SMTP server on 127.0.0.1, no login, stopped after the test."""
    return smtp_server_factory()
