"""A private Dovecot on loopback for the IMAP tests (NOTES.md, "Dovecot on loopback").

One server per test session, in the foreground under the fixture's control, with its own
config, users file and mail in a temporary folder: a plain IMAP listener (which also
offers STARTTLS) and an imaps listener, both on free ports of 127.0.0.1, with a
self-signed certificate for 127.0.0.1 and localhost (``ca_file`` trusts it).

Each test takes fresh users (``add_user``), so tests never see each other's mail. As root
(CI) the mail and login processes run as Debian's ``dovecot`` and ``dovenull`` users; as a
normal user, as that user without chroots.

Dovecot missing: the tests that need it skip with the reason, or fail under ``CI=true``.
``make test`` installs it first when it can (``scripts/ensure-dovecot``).
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
INSTALL_HINT = "apt-get install -y dovecot-imapd (`make test` does it when run as root)"
START_TIMEOUT_S = 15.0
SPARE_USERS = ("support", "partners", "mime", "alice", "bob")  # written before the start
SPARE_PER_NAME = 40


def binaries() -> tuple[str, str, str]:
    """Paths of dovecot, doveadm and openssl; skips (fails under CI) when one is missing."""
    found = {name: shutil.which(name, path=SBIN_PATH) for name in ("dovecot", "doveadm", "openssl")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed: the IMAP tests need a real Dovecot; "
        reason += INSTALL_HINT
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI=true: {reason}")
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    return found["dovecot"], found["doveadm"], found["openssl"]  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class User:
    name: str  # the login, an address
    password: str


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  {chroot}
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
{anvil}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = {owner}home={dir}/home/%u
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""


class Dovecot:
    """A running private Dovecot and the helpers the tests use on it."""

    host = "127.0.0.1"

    def __init__(self, root: Path, dovecot: str, doveadm: str, openssl: str) -> None:
        self.root = root
        self.dovecot = dovecot
        self.doveadm_bin = doveadm
        self.conf = root / "dovecot.conf"
        self.users_file = root / "users"
        self.ca_file = root / "cert.pem"  # self-signed: the certificate is its own CA
        self.port = free_port()
        self.tls_port = free_port()
        self._users: dict[str, User] = {}
        self._numbers = itertools.count(1)
        self._spare: dict[str, list[User]] = {}
        for local in SPARE_USERS:
            for _ in range(SPARE_PER_NAME):
                n = next(self._numbers)
                user = User(f"{local}{n}@example.com", f"pw-{local}-{n}-s3cr3t")
                self._users[user.name] = user
                self._spare.setdefault(local, []).append(user)
        self._process: subprocess.Popen[bytes] | None = None
        self._setup(openssl)

    # -- life cycle ---------------------------------------------------------------------

    def _setup(self, openssl: str) -> None:
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir()
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.ca_file),
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        self._write_users(wait=False)
        if os.geteuid() == 0:
            # Mail and login processes must not run as root: Debian's service users. They
            # must reach the folder, which mkdtemp() makes 0700.
            internal, login = "dovecot", "dovenull"
            owner, chroot, anvil = "uid=dovecot gid=dovecot ", "", ""
            self.root.chmod(0o755)
            for sub in ("mail", "home"):
                shutil.chown(self.root / sub, "dovecot", "dovecot")
            (self.root / "key.pem").chmod(0o644)  # read by the login process
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            internal = login = me
            owner, chroot, anvil = "", "chroot =", "service anvil {\n  chroot =\n}"
        self.conf.write_text(
            CONFIG.format(
                dir=self.root, port=self.port, tls_port=self.tls_port, internal=internal,
                login=login, owner=owner, chroot=chroot, anvil=anvil,
            ),
            encoding="utf-8",
        )  # fmt: skip

    def start(self) -> None:
        log = open(self.root / "dovecot.stderr", "ab")  # noqa: SIM115 - lives with the process
        self._process = subprocess.Popen(
            [self.dovecot, "-F", "-c", str(self.conf)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (self.port, self.tls_port):
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"dovecot exited at start:\n{self.log_text()}")
                try:
                    with socket.create_connection((self.host, port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"dovecot did not listen on {port}:\n{self.log_text()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and wait for it (it takes a few seconds)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def log_text(self) -> str:
        parts = []
        for name in ("dovecot.log", "dovecot.stderr"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace")[-4000:])
        return "\n".join(parts)

    # -- users --------------------------------------------------------------------------

    def add_user(self, local: str = "support", password: str | None = None) -> User:
        """A fresh user (``support3@example.com``) with an empty mailbox. Users with the
        usual local parts are written before the server starts; others, and a password
        given here, make Dovecot re-read its users file (see ``_write_users``)."""
        pool = self._spare.get(local)
        if pool and password is None:
            user = pool.pop(0)
        else:
            n = next(self._numbers)
            user = User(f"{local}{n}@example.com", password or f"pw-{local}-{n}-s3cr3t")
            self._users[user.name] = user
            self._write_users()
        return user

    def set_password(self, user: User, password: str) -> User:
        changed = User(user.name, password)
        self._users[user.name] = changed
        self._write_users()
        return changed

    def _write_users(self, wait: bool = True) -> None:
        """Write the users file. Dovecot looks at it at most once a second (and only when
        a login asks), so a change is seen by logins from the next second on: wait
        for it."""
        text = "".join(f"{u.name}:{{PLAIN}}{u.password}\n" for u in self._users.values())
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(self.users_file)
        # Dovecot reloads the file when its mtime (whole seconds) or size differ from what
        # it loaded; a new password of the same length written in the same second would go
        # unseen, so every write gets an mtime of its own.
        self._users_stamp = max(int(time.time()) + 1, getattr(self, "_users_stamp", 0) + 1)
        os.utime(self.users_file, (self._users_stamp, self._users_stamp))
        if wait:
            time.sleep(1.05 - time.time() % 1)

    # -- mail ---------------------------------------------------------------------------

    def doveadm(self, *args: str, input: bytes | None = None, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(
            [self.doveadm_bin, "-c", str(self.conf), *args],
            input=input,
            capture_output=True,
            check=False,
        )
        if done.returncode not in ok:
            raise RuntimeError(
                f"doveadm {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode("utf-8", errors="replace")

    def deliver(self, user: User, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver one message the way a local delivery agent would (``doveadm save``)."""
        self.doveadm("save", "-u", user.name, "-m", folder, input=raw)

    def append(
        self,
        user: User,
        messages: Iterable[tuple[bytes, Iterable[str], datetime | None]],
        folder: str = "INBOX",
    ) -> None:
        """APPEND messages over IMAP with their flags and delivery times (INTERNALDATE)."""
        imap = imaplib.IMAP4(self.host, self.port)
        try:
            imap.login(user.name, user.password)
            for raw, flags, when in messages:
                moment = imaplib.Time2Internaldate(when or datetime.now(UTC))
                flag_text = f"({' '.join(flags)})" if flags else None
                typ, data = imap.append(folder, flag_text, moment, raw)
                if typ != "OK":
                    raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            imap.logout()

    def messages(self, user: User, folder: str = "INBOX") -> dict[int, frozenset[str]]:
        """UID -> flags of every message, read by doveadm; ``\\Recent`` is left out (it
        belongs to whichever session saw a message first)."""
        out = self.doveadm("fetch", "-u", user.name, "uid flags", "mailbox", folder, "all")
        found: dict[int, frozenset[str]] = {}
        for block in out.split("\f"):
            uid = re.search(r"^uid: (\d+)$", block, re.MULTILINE)
            flags = re.search(r"^flags:(.*)$", block, re.MULTILINE)
            if uid:
                words = flags.group(1).split() if flags else []
                found[int(uid.group(1))] = frozenset(w for w in words if w != "\\Recent")
        return found

    def status(self, user: User, folder: str = "INBOX") -> dict[str, int]:
        """messages, uidvalidity, uidnext and highestmodseq of a folder."""
        fields = "messages uidvalidity uidnext highestmodseq"
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user.name, fields, folder)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}

    def set_uidvalidity(self, user: User, value: int, folder: str = "INBOX") -> None:
        self.doveadm("mailbox", "update", "-u", user.name, "--uid-validity", str(value), folder)

    def kick(self, user: User) -> None:
        """Drop the user's connections (the client sees BYE); 68: nobody was connected."""
        self.doveadm("kick", user.name, ok=(0, 68))


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of a server, for a fault the server cannot make:
    ``blackhole()`` turns every connection open at that moment silent, as a dead NAT entry
    or a cut link does: nothing is forwarded either way any more, and no FIN or RST comes
    (the proxy still reads, so the client's writes succeed). Connections made afterwards
    are forwarded as before. A thread per connection; ``close()`` ends them all."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._silenced: set[int] = set()  # ids of connections made silent
        self._open: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._ids = itertools.count(1)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def blackhole(self) -> int:
        """Silence every open connection; returns how many."""
        with self._lock:
            self._silenced.update(self._open)
            return len(self._open)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            n = next(self._ids)
            with self._lock:
                self._open[n] = (client, upstream)
            thread = threading.Thread(target=self._pump, args=(n, client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, n: int, client: socket.socket, upstream: socket.socket) -> None:
        other = {client: upstream, upstream: client}
        watching = [client, upstream]
        try:
            while watching and not self.closed.is_set():
                ready, _, _ = select.select(watching, [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if n not in self._silenced:
                        if not data:
                            return  # a FIN: both ends are closed
                        other[sock].sendall(data)
                    elif not data:  # a FIN goes nowhere either
                        watching.remove(sock)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.pop(n, None)
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot for the session (skips loudly when it is not installed)."""
    found = binaries()
    root = Path(tempfile.mkdtemp(prefix="maildaemon-dovecot-"))
    server = Dovecot(root, *found)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
