"""Delivery of a finished message (a digest or an alert): SMTP, or an outbox Maildir (SPEC 9).

The only module that imports smtplib. ``deliver`` takes a complete RFC 5322 message and
either hands it to the configured SMTP server or writes it into the outbox; it returns a
short description of where it went, for the logs, or raises ``DeliveryError`` with a
one-line reason that names the server or folder and what failed, never a secret.

SMTP: ``security = "tls"`` (implicit TLS, port 465), ``"starttls"`` (port 587, and no
fallback to plain text when the server does not offer STARTTLS) or ``"plain"``, which to a
host that is not loopback is allowed but logged as a warning. Certificates are verified
against the system's CAs, or only against ``ca_file`` when one is given; ``verify = false``
turns verification off for that server. A login happens only when ``username`` is set, with
the password from ``password_env`` or ``password_command`` (``secrets.py``), read before
the network is touched. Every socket operation has a timeout of ``TIMEOUT_S``. A message
that some recipients refused is delivered to the others (and logged); when all are refused
it is an error. A connection lost after the message was sent and before the server
confirmed it is an error too: the caller resends it with the same Message-ID.

Outbox: a Maildir (``tmp``, ``new``, ``cur`` made when missing). The message is written to
``tmp/<name>.eml``, flushed and fsynced, then renamed into ``new/``: a reader never sees
a partial file. ``name`` identifies the message (the same on every retry), so a retry of a
message already in ``new/`` or, after a mail client read it, in ``cur/`` (with a ``:2,...``
info suffix), writes nothing and returns the existing file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from maildaemon.config import Delivery, SmtpSettings
from maildaemon.errors import AuthError, DeliveryError
from maildaemon.secrets import command_secret, env_secret
from maildaemon.tls import client_context, is_loopback

__all__ = ["TIMEOUT_S", "DeliveryError", "deliver"]

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0  # connect, and every read and write of an SMTP session
_SECRET_LABEL = "smtp"  # what secrets.py calls the "inbox" in its messages; stripped again
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_EOL = re.compile(rb"\r\n|\r(?!\n)|\n")
SUFFIX = ".eml"


def deliver(
    delivery: Delivery, raw: bytes, envelope_from: str, recipients: Sequence[str], name: str
) -> str:
    """Send ``raw`` to ``recipients`` (SMTP) or file it under ``name`` (outbox); returns
    where it went ("smtp host:port", or the outbox file's path)."""
    if delivery.kind == "smtp" and delivery.smtp is not None:
        return _send_smtp(delivery.smtp, raw, envelope_from, recipients)
    if delivery.kind == "outbox" and delivery.outbox is not None:
        return str(_write_outbox(delivery.outbox, raw, name))
    raise DeliveryError(f"delivery {delivery.kind!r} is not configured")


# -- SMTP -------------------------------------------------------------------------------------


def _ssl_context(s: SmtpSettings, where: str) -> ssl.SSLContext:
    try:
        return client_context(s.ca_file, s.verify)
    except (OSError, ssl.SSLError) as e:
        raise DeliveryError(f"{where}: ca_file {s.ca_file} unreadable: {e}") from None


def _secret(s: SmtpSettings, where: str) -> str:
    try:
        if s.password_command:
            return command_secret(s.password_command, "password_command", _SECRET_LABEL)
        return env_secret(s.password_env, _SECRET_LABEL, s.username or "")
    except AuthError as e:
        reason = str(e).removeprefix(f"inbox '{_SECRET_LABEL}': ")
        raise DeliveryError(f"{where}: {reason}") from None


def _text(said: bytes | str, secret: str | None = None) -> str:
    """A server's reply as one short line (the secret, should it echo it, masked)."""
    text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text[:200]


def _send_smtp(s: SmtpSettings, raw: bytes, envelope_from: str, recipients: Sequence[str]) -> str:
    where = f"smtp {s.host}:{s.port}"
    if not recipients:
        raise DeliveryError(f"{where}: no recipients")
    secret = _secret(s, where) if s.username else None  # before the network
    context = None if s.security == "plain" else _ssl_context(s, where)
    if s.security == "plain" and not is_loopback(s.host):
        log.warning(
            'digest delivery: security = "plain" to %s:%s: mail%s crosses the network unencrypted',
            s.host,
            s.port,
            " and the password" if s.username else "",
        )
    data = _EOL.sub(b"\r\n", raw)
    step = "connect"
    client: smtplib.SMTP | None = None
    try:
        if s.security == "tls":
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=TIMEOUT_S)
        if s.security == "starttls":
            step = "STARTTLS"
            client.ehlo()
            if not client.has_extn("starttls"):
                raise DeliveryError(
                    f"{where}: server does not offer STARTTLS; use security = "
                    '"tls" (port 465), or "plain" only on a trusted network'
                )
            client.starttls(context=context)
            client.ehlo()
        if s.username and secret is not None:
            step = "login"
            _login(client, s, secret, where)
        step = "transaction"
        options = ["BODY=8BITMIME"] if _is_8bit(data) and _has(client, "8bitmime") else []
        refused = client.sendmail(envelope_from, list(recipients), data, mail_options=options)
    except DeliveryError:
        _drop(client)
        raise
    except smtplib.SMTPRecipientsRefused as e:
        _drop(client)
        raise DeliveryError(
            f"{where}: every recipient refused: {_refusals(e.recipients)}"
        ) from None
    except smtplib.SMTPSenderRefused as e:
        _drop(client)
        raise DeliveryError(
            f"{where}: sender {envelope_from} refused ({e.smtp_code} {_text(e.smtp_error)})"
        ) from None
    except smtplib.SMTPDataError as e:
        _drop(client)
        raise DeliveryError(
            f"{where}: message refused ({e.smtp_code} {_text(e.smtp_error)})"
        ) from None
    except smtplib.SMTPServerDisconnected as e:
        _drop(client)
        raise DeliveryError(_disconnected(where, step, str(e))) from None
    except smtplib.SMTPNotSupportedError as e:
        _drop(client)
        raise DeliveryError(f"{where}: {step} failed: {_text(str(e))}") from None
    except smtplib.SMTPResponseException as e:
        _drop(client)
        said = _text(e.smtp_error, secret)
        raise DeliveryError(f"{where}: {step} refused ({e.smtp_code} {said})") from None
    except ssl.SSLCertVerificationError as e:
        _drop(client)
        reason = e.verify_message or "not trusted"
        raise DeliveryError(
            f"{where}: certificate verify failed ({reason}); set ca_file or verify = false"
        ) from None
    except ssl.SSLError as e:
        _drop(client)
        raise DeliveryError(f"{where}: TLS failed during {step}: {e.reason or e}") from None
    except TimeoutError:
        _drop(client)
        raise DeliveryError(f"{where}: no answer within {TIMEOUT_S:g} s ({step})") from None
    except socket.gaierror as e:
        _drop(client)
        raise DeliveryError(f"{where}: cannot resolve {s.host}: {e.strerror or e}") from None
    except (smtplib.SMTPException, OSError) as e:
        _drop(client)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _text(str(e), secret)
        raise DeliveryError(f"{where}: {step} failed: {reason or type(e).__name__}") from None
    with contextlib.suppress(smtplib.SMTPException, OSError):
        client.quit()  # the message is accepted; a failing goodbye changes nothing
    _drop(client)
    if refused:
        log.warning("%s: some recipients refused: %s", where, _refusals(refused))
        return f"{where} (refused: {', '.join(sorted(refused))})"
    return where


def _login(client: smtplib.SMTP, s: SmtpSettings, secret: str, where: str) -> None:
    hint = "check password_command" if s.password_command else f"check {s.password_env}"
    try:
        client.login(s.username or "", secret)
    except smtplib.SMTPAuthenticationError as e:
        said = _text(e.smtp_error, secret)
        raise DeliveryError(
            f"{where}: login refused for {s.username} ({e.smtp_code} {said}) — {hint}"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(
            f"{where}: server offers no login (AUTH) but username is set; remove username "
            "or use the submission port"
        ) from None
    except smtplib.SMTPException as e:
        if isinstance(e, smtplib.SMTPResponseException | smtplib.SMTPServerDisconnected):
            raise
        raise DeliveryError(f"{where}: login failed: {_text(str(e), secret)}") from None


def _disconnected(where: str, step: str, said: str) -> str:
    if "timed out" in said:
        return f"{where}: no answer within {TIMEOUT_S:g} s ({step})"
    if step == "transaction":
        return (
            f"{where}: connection lost during the transaction before the server confirmed "
            "the message (it may have been received)"
        )
    return f"{where}: server closed the connection during {step}"


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{rcpt} ({code} {_text(said)})" for rcpt, (code, said) in refused.items())


def _is_8bit(data: bytes) -> bool:
    return not data.isascii()


def _has(client: smtplib.SMTP, extension: str) -> bool:
    return bool(client.has_extn(extension))


def _drop(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):  # already closed
            client.close()


# -- outbox -----------------------------------------------------------------------------------


def _write_outbox(root: Path, raw: bytes, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a safe outbox file name: {name!r}")
    filename = name + SUFFIX
    tmp, new, cur = root / "tmp", root / "new", root / "cur"
    where = f"outbox {root}"
    try:
        for folder in (tmp, new, cur):
            folder.mkdir(parents=True, exist_ok=True)
        existing = _already_there(new, cur, filename)
        if existing is not None:
            log.info("%s: %s is already there; not written again", where, existing)
            return existing
        part = tmp / filename
        with open(part, "wb") as f:  # a leftover from a crashed attempt is overwritten
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        final = new / filename
        os.rename(part, final)
        _fsync_dir(new)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        at = f" ({e.filename})" if e.filename else ""
        raise DeliveryError(f"{where}: cannot write: {reason}{at}") from None
    return final


def _already_there(new: Path, cur: Path, filename: str) -> Path | None:
    if (new / filename).exists():
        return new / filename
    prefix = filename + ":"
    with os.scandir(cur) as entries:
        for entry in entries:
            if entry.name == filename or entry.name.startswith(prefix):
                return cur / entry.name
    return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
