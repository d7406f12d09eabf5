"""Client TLS shared by the IMAP and SMTP connections (SPEC 11: certificates are verified
unless the config says otherwise for that server)."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: where plain text is not worth a warning."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """The system's CAs; only ``ca_file`` when given; no checks at all with ``verify =
    false``. Raises OSError or ssl.SSLError when ``ca_file`` cannot be read."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return ssl.create_default_context()
