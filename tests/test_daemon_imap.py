"""The daemon on IMAP inboxes against the real Dovecot (tests/imap_server.py): mail seen
through IDLE at once, and the server faults it survives without a restart: `doveadm kick`,
Dovecot stopped and started, a UIDVALIDITY change, a refused login on one of two inboxes.
`maildaemon run` is a subprocess (SIGTERM at the end exits 0), except where a constant is
shortened in-process (IDLE renewal, the polling fallback)."""

from __future__ import annotations

import logging
import random
import signal
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imap_server import Dovecot, TcpProxy, User
from test_daemon import DaemonProcess, client_mail, inbox_status, task_ids, until
from test_imap import demo_config, demo_messages, imap_inbox

from maildaemon import daemon as daemon_module
from maildaemon.config import load_config
from maildaemon.daemon import Daemon
from maildaemon.imap import KEEPALIVE_IDLE_S, ImapInbox

IDLE_LINE = "waiting for mail in INBOX with IDLE"
LOST_LINE = "connection lost while waiting for mail"
LATENCIES: list[float] = []  # APPEND to task in the database, seconds (printed at the end)


def config_for(tmp_path: Path, inboxes: str, poll: str = "60s") -> Path:
    """The demo config on these inboxes; with a 60 s poll interval only IDLE is quick."""
    path = demo_config(tmp_path, inboxes)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('poll_interval = "60s"', f'poll_interval = "{poll}"'), "utf-8")
    return path


@pytest.fixture
def support(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> User:
    """A fresh mailbox with three demo messages, its password in the environment."""
    user = dovecot.add_user("support")
    dovecot.append(user, demo_messages()[:3])
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", user.password)
    return user


def idling(d: DaemonProcess, times: int = 1) -> None:
    """Until the daemon has entered IDLE on ``times`` connections (and a moment more)."""
    until(lambda: d.log().count(IDLE_LINE) >= times, what=f"IDLE on connection {times}")
    time.sleep(0.3)


def wait_task(run_cli: Callable[..., Any], config: Path, mid: str, timeout: float) -> float:
    """Seconds until the task of ``mid`` is in the database (`tasks --json`)."""
    began = time.monotonic()
    until(lambda: mid in task_ids(run_cli, config), timeout, f"the task of {mid}")
    return time.monotonic() - began


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def stopped_cleanly(d: DaemonProcess) -> None:
    assert d.stop() == 0
    assert "Traceback" not in d.log()


# -- IDLE --------------------------------------------------------------------------------------


def test_mail_appended_while_idle_is_in_the_database_within_2s(
    dovecot, support, tmp_path, start_daemon, run_cli
):
    config = config_for(tmp_path, imap_inbox(dovecot, "support", support))
    d = start_daemon(config)
    idling(d)
    latencies = []
    for i in range(6):
        mid, raw = client_mail(f"Appended while idle {i}")
        began = time.monotonic()
        dovecot.append(support, [(raw, (), None)])
        wait_task(run_cli, config, mid, timeout=10)
        latencies.append(time.monotonic() - began)
        time.sleep(0.2)
    LATENCIES.extend(latencies)
    print(f"\nIDLE latency APPEND -> task: {[round(x, 3) for x in latencies]}")
    assert statistics.median(latencies) <= 2.0
    assert max(latencies) <= 4.0
    assert d.log().count(IDLE_LINE) == 1  # one connection all along, IDLE re-issued on it
    began = time.monotonic()
    stopped_cleanly(d)  # SIGTERM in the middle of IDLE
    assert time.monotonic() - began < 3


def test_a_kick_while_idle_reconnects_and_later_mail_is_ingested(
    dovecot, support, tmp_path, start_daemon, run_cli
):
    config = config_for(tmp_path, imap_inbox(dovecot, "support", support))
    d = start_daemon(config)
    idling(d)
    dovecot.kick(support)
    d.wait_log(LOST_LINE, timeout=30)
    idling(d, 2)
    mid, raw = client_mail("Delivered after a kick")
    dovecot.deliver(support, raw)
    latency = wait_task(run_cli, config, mid, timeout=5)
    print(f"\nafter kick: delivered -> task in {latency:.3f}s")
    assert "BYE" in d.log()
    stopped_cleanly(d)


def test_dovecot_stopped_and_started_while_idle_then_mail_is_ingested(
    dovecot, support, tmp_path, start_daemon, run_cli
):
    config = config_for(tmp_path, imap_inbox(dovecot, "support", support), poll="2s")
    d = start_daemon(config)
    idling(d)
    try:
        dovecot.stop()
        d.wait_log(LOST_LINE, timeout=30)
    finally:
        dovecot.start()
    mid, raw = client_mail("Delivered after a restart")
    dovecot.deliver(support, raw)
    began = time.monotonic()
    wait_task(run_cli, config, mid, timeout=25)
    print(f"\nafter restart: delivered -> task in {time.monotonic() - began:.3f}s")
    idling(d, 2)
    stopped_cleanly(d)


def test_a_uidvalidity_change_while_running_duplicates_nothing(
    dovecot, tmp_path, start_daemon, run_cli, monkeypatch
):
    user = dovecot.add_user("support")
    dovecot.append(user, demo_messages())
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", user.password)
    config = config_for(tmp_path, imap_inbox(dovecot, "support", user))
    db = tmp_path / "md.db"
    d = start_daemon(config)
    idling(d)
    assert count(db, "SELECT COUNT(*) FROM messages") == 37
    before = sorted(task_ids(run_cli, config))
    new_validity = dovecot.status(user)["uidvalidity"] + 1000
    dovecot.set_uidvalidity(user, new_validity)
    mid, raw = client_mail("Delivered after a UIDVALIDITY change")
    dovecot.deliver(user, raw)
    wait_task(run_cli, config, mid, timeout=10)
    until(
        lambda: (
            count(db, f"SELECT COUNT(*) FROM locations WHERE uidvalidity = {new_validity}") == 38
        ),
        what="every location moved to the new UIDVALIDITY",
    )
    assert count(db, "SELECT COUNT(*) FROM messages") == 38
    assert count(db, "SELECT COUNT(*) FROM locations") == 38  # moved, not added
    assert sorted(set(task_ids(run_cli, config)) - {mid}) == before
    state = inbox_status(run_cli, config)["support"]
    assert state["messages"] == 38 and not state["failing"]
    assert "UIDVALIDITY changed" in d.log()
    stopped_cleanly(d)


# -- a refused login -------------------------------------------------------------------------


def test_a_refused_login_backs_off_while_the_other_inbox_syncs_and_recovers_on_sighup(
    dovecot, support, tmp_path, start_daemon, run_cli, monkeypatch
):
    partners = dovecot.add_user("partners")
    dovecot.deliver(partners, client_mail("Waiting for partners")[1])
    monkeypatch.setenv("PARTNERS_IMAP_PASSWORD", partners.password)
    dovecot.set_password(partners, "changed-on-the-server")  # the config's password is refused
    inboxes = imap_inbox(dovecot, "partners", partners) + imap_inbox(dovecot, "support", support)
    config = config_for(tmp_path, inboxes, poll="1s")
    d = start_daemon(config)
    try:
        state = until(
            lambda: (
                (s := inbox_status(run_cli, config))["partners"]["failing"]
                and s["support"]["messages"] == 3
                and s
            ),
            what="partners failing while support synced",
        )
        assert "login refused" in state["partners"]["last_error"]
        assert not state["support"]["failing"]
        d.wait_log("inbox partners: sync failed (2 in a row)", timeout=15)  # backing off
        mid, raw = client_mail("Support keeps syncing")
        dovecot.append(support, [(raw, (), None)])
        wait_task(run_cli, config, mid, timeout=5)
        assert inbox_status(run_cli, config)["partners"]["failing"]
    finally:
        dovecot.set_password(partners, partners.password)  # fixed in the passwd file
    d.signal(signal.SIGHUP)
    began = time.monotonic()
    until(
        lambda: not inbox_status(run_cli, config)["partners"]["failing"],
        timeout=5,
        what="partners to recover after SIGHUP",
    )
    print(f"\nrecovered {time.monotonic() - began:.3f}s after SIGHUP")
    d.wait_log("inbox partners: recovered")
    assert inbox_status(run_cli, config)["partners"]["messages"] == 1
    assert partners.password not in d.log()
    stopped_cleanly(d)


# -- in-process: IDLE renewal and the polling fallback ---------------------------------------


def in_process(config: Path) -> tuple[Daemon, threading.Thread]:
    loaded = load_config(config)
    d = Daemon(loaded, config, loaded.daemon.database, rng=random.Random(4))
    thread = threading.Thread(target=lambda: d.run(install_signals=False))
    thread.start()
    return d, thread


def test_idle_is_reissued_on_the_same_connection_and_still_sees_mail(
    dovecot, support, tmp_path, run_cli, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG, logger="maildaemon")
    monkeypatch.setattr(daemon_module, "IDLE_RENEW", daemon_module.timedelta(seconds=1))
    config = config_for(tmp_path, imap_inbox(dovecot, "support", support))
    d, thread = in_process(config)
    try:
        until(lambda: caplog.text.count("IDLE ended: renew") >= 2, what="two renewals")
        mid, raw = client_mail("After renewals")
        dovecot.append(support, [(raw, (), None)])
        wait_task(run_cli, config, mid, timeout=3)
    finally:
        d.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert caplog.text.count(IDLE_LINE) == 1
    assert LOST_LINE not in caplog.text


def test_a_connection_gone_silent_in_idle_is_dropped_and_mail_after_it_is_ingested(
    dovecot, support, tmp_path, run_cli, monkeypatch, caplog
):
    """A link that goes silent (no FIN, no data: a dead NAT entry) while the daemon is in
    IDLE, made by a proxy in front of Dovecot: found out at the next IDLE renewal, when DONE
    goes unanswered, and the daemon reconnects (the proxy forwards new connections) and
    ingests mail delivered afterwards, without a restart."""
    caplog.set_level(logging.INFO, logger="maildaemon")
    monkeypatch.setattr(daemon_module, "IDLE_RENEW", daemon_module.timedelta(seconds=2))
    monkeypatch.setattr(daemon_module, "IDLE_DONE_TIMEOUT", daemon_module.timedelta(seconds=1))
    proxy = TcpProxy(dovecot.port)
    inbox = imap_inbox(dovecot, "support", support).replace(str(dovecot.port), str(proxy.port))
    config = config_for(tmp_path, inbox)
    d, thread = in_process(config)
    try:
        until(lambda: IDLE_LINE in caplog.text, what="IDLE")
        time.sleep(0.3)
        assert proxy.blackhole() == 1  # the daemon's one connection goes silent
        began = time.monotonic()
        until(lambda: LOST_LINE in caplog.text, timeout=10, what="the silent connection found")
        assert time.monotonic() - began < 2 + 1 + 2  # a renewal, DONE's timeout, slack
        assert "no answer in 1s" in caplog.text
        until(lambda: caplog.text.count(IDLE_LINE) >= 2, what="IDLE on a new connection")
        mid, raw = client_mail("After a silent link")
        dovecot.append(support, [(raw, (), None)])
        wait_task(run_cli, config, mid, timeout=5)
    finally:
        d.request_stop()
        thread.join(15)
        proxy.close()
    assert not thread.is_alive()
    assert "Traceback" not in caplog.text


def test_imap_connections_have_tcp_keepalive(dovecot, support, tmp_path):
    """The kernel probes an idle connection, so a dead peer ends a long IDLE with an error
    instead of leaving it waiting (where nothing between answers for the peer)."""
    config = load_config(config_for(tmp_path, imap_inbox(dovecot, "support", support)))
    with ImapInbox(config.inboxes[0]) as imap:
        sock = imap.connect().socket()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S


def test_a_server_without_idle_is_polled(dovecot, support, tmp_path, run_cli, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="maildaemon")
    monkeypatch.setattr(ImapInbox, "can_idle", property(lambda self: False))
    config = config_for(tmp_path, imap_inbox(dovecot, "support", support), poll="1s")
    d, thread = in_process(config)
    try:
        until(lambda: "the server has no IDLE; polling every 1s" in caplog.text, what="polling")
        mid, raw = client_mail("Found by polling")
        dovecot.append(support, [(raw, (), None)])
        wait_task(run_cli, config, mid, timeout=4)
        began = time.monotonic()
        d.request_stop()
        thread.join(10)
        assert time.monotonic() - began < 2
    finally:
        d.request_stop()
        thread.join(10)
    assert IDLE_LINE not in caplog.text


# -- a dead connection, without a server ------------------------------------------------------


class FakeClient:
    """What imapclient does on a socket the server closed: `idle_check` returns [] at once,
    every time (after a BYE it already returned)."""

    def __init__(self, responses: list[list[Any]]) -> None:
        self.responses = responses
        self.calls = 0
        self.shut = False

    def idle(self) -> None:
        pass

    def idle_check(self, timeout: float) -> list[Any]:
        self.calls += 1
        return self.responses.pop(0) if self.responses else []

    def shutdown(self) -> None:
        self.shut = True


@pytest.mark.parametrize(
    ("responses", "why"),
    [
        ([], "the server closed the connection"),
        (
            [[(b"BYE", b"Server", b"shutting", b"down.")]],
            "the server said BYE (Server shutting down.)",
        ),
    ],
)
def test_a_dead_connection_is_reported_lost_and_dropped_never_reused(tmp_path, responses, why):
    config = load_config(config_for(tmp_path, imap_inbox_stub()))
    imap = ImapInbox(config.inboxes[0])
    fake = FakeClient(responses)
    imap.client = fake  # type: ignore[assignment]
    began = time.monotonic()
    assert imap.idle(60, lambda: False) == ("lost", why)
    assert time.monotonic() - began < 1 and fake.shut and imap.client is None
    assert fake.calls <= 2


def imap_inbox_stub() -> str:
    return (
        '[[inboxes]]\nname = "support"\nimap = { host = "127.0.0.1", port = 9, '
        'security = "plain", username = "u", password_env = "UNUSED_IMAP_PASSWORD" }\n\n'
    )
