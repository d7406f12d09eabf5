"""The daemon (SPEC 10 `run`, 11): units of work called directly, and `maildaemon run` as a
subprocess on local Maildirs: new mail without a restart, SIGTERM, SIGHUP, a failing inbox
that recovers, the CLI working beside it, retention."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from maildaemon.config import load_config
from maildaemon.daemon import IMAP_UNAVAILABLE, Daemon, backoff_delay
from maildaemon.store import Store

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DEMO_NOW = "2026-11-24T16:30:00Z"
SSO = "SSO login loop after password reset"  # a demo task nobody owns
NOW = datetime.fromisoformat(DEMO_NOW.replace("Z", "+00:00"))
TIMEOUT = 10.0
_counter = iter(range(1, 1_000_000))


# -- helpers -------------------------------------------------------------------------------


def until(check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def deliver(maildir: Path, raw: bytes) -> Path:
    """Deliver like an MTA: write into tmp/, then rename into new/."""
    name = f"{int(time.time())}.M{next(_counter)}P{os.getpid()}.test"
    tmp = maildir / "tmp" / name
    tmp.write_bytes(raw)
    dest = maildir / "new" / name
    os.rename(tmp, dest)
    return dest


def client_mail(subject: str, n: int | None = None) -> tuple[str, bytes]:
    """A new request from a client (acme), as (Message-ID, bytes)."""
    n = n if n is not None else next(_counter)
    mid = f"<daemon-test-{n}-{os.getpid()}@acme.com>"
    raw = (
        f"From: Pat Client <pat@acme.com>\r\n"
        f"To: support@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(datetime.now().astimezone())}\r\n"
        f"Message-ID: {mid}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, {subject.lower()} please.\r\n"
    ).encode()
    return mid, raw


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (the demo config and Maildirs) with the database in tmp_path
    and a 1 s poll interval."""
    folder = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.db*"))
    config = folder / "demo.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("../demo/demo.db", str(tmp_path / "demo.db"))
    text = text.replace('poll_interval = "60s"', 'poll_interval = "1s"')
    text = text.replace("../demo/outbox", str(tmp_path / "outbox"))
    config.write_text(text, encoding="utf-8")
    return folder


class DaemonProcess:
    """`maildaemon --config X run` as a subprocess, its stderr in a file."""

    def __init__(self, config: Path, log_path: Path, options: tuple[str, ...] = ()) -> None:
        self.config = config
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maildaemon", "--config", str(config), *options, "run"],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = TIMEOUT, after: int = 0) -> str:
        return until(
            lambda: text in self.log()[after:] and self.log(), timeout, f"log line {text!r}"
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path, *options: str) -> DaemonProcess:
        """``options`` go before `run`, e.g. ``--now``."""
        d = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log", options)
        started.append(d)
        d.wait_log("started:")
        return d

    yield start
    for d in started:
        d.stop()  # kills what did not stop; closes the log file


def cli_json(run_cli: Callable[..., Any], config: Path, *args: str) -> Any:
    result = run_cli("--config", config, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def task_ids(run_cli: Callable[..., Any], config: Path) -> dict[str, int]:
    return {t["root_message_id"]: t["id"] for t in cli_json(run_cli, config, "tasks")}


def inbox_status(run_cli: Callable[..., Any], config: Path) -> dict[str, dict[str, Any]]:
    return {i["inbox"]: i for i in cli_json(run_cli, config, "status")["inboxes"]}


def daemon_for(config_path: Path, clock: datetime | None = None) -> Daemon:
    config = load_config(config_path)
    return Daemon(
        config,
        config_path,
        config.daemon.database,
        clock=(lambda: clock) if clock is not None else (lambda: NOW),
        rng=random.Random(4),
    )


# -- units of work, called directly ----------------------------------------------------------


def test_backoff_doubles_from_the_first_delay_up_to_the_cap_with_jitter():
    full = [backoff_delay(n, 1.0, 300.0, 0.999999) for n in range(1, 12)]
    assert full[:4] == pytest.approx([1, 2, 4, 8], rel=1e-4)
    assert max(full) == pytest.approx(300, rel=1e-4)
    assert [backoff_delay(n, 1.0, 300.0, 0.0) for n in (1, 3, 20)] == [0.5, 2.0, 150.0]


def test_a_pass_ingests_new_mail_and_a_second_inbox_copy_lists_both_inboxes(examples):
    daemon = daemon_for(examples / "demo.toml")
    by_name = {i.name: i for i in daemon.config.inboxes}
    try:
        # One inbox at a time, as the inbox threads do: the initech message that reached
        # both shared addresses is stored once, and its task lists both inboxes.
        for name in ("partners", "support"):
            assert daemon.tick(by_name[name]) is None
        rows = daemon.store.query("SELECT inboxes FROM tasks WHERE client = 'initech'")
        assert [json.loads(r["inboxes"]) for r in rows] == [["partners", "support"]]
        again = daemon.sync_inbox(by_name["support"])
        assert (again.seen, again.new) == (0, 0)
        assert daemon.rederive_if_new([again]) is None
    finally:
        daemon.close_store()


def test_a_missing_maildir_is_recorded_as_failing_and_recovers_when_it_appears(examples, run_cli):
    config = examples / "demo.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("demo-maildir/partners", "later/partners"), encoding="utf-8")
    daemon = daemon_for(config)
    partners = daemon.config.inbox_by_name("partners")
    assert partners is not None
    try:
        error = daemon.tick(partners)
        assert error is not None and "no such maildir" in error
        assert inbox_status(run_cli, config)["partners"]["failing"]
        shutil.copytree(examples / "demo-maildir" / "partners", examples / "later" / "partners")
        assert daemon.tick(partners) is None
        state = inbox_status(run_cli, config)["partners"]
        assert (state["failing"], state["messages"]) == (False, 3)
    finally:
        daemon.close_store()


def test_an_imap_inbox_that_cannot_sync_records_an_error_and_never_raises(examples, run_cli):
    config = examples / "demo.toml"
    text = config.read_text(encoding="utf-8")
    imap = (
        '[[inboxes]]\nname = "remote"\nimap = { host = "127.0.0.1", port = 9, '
        'security = "plain", username = "u", password_env = "MAILDAEMON_TEST_NO_SUCH_VAR" }\n\n'
    )
    config.write_text(text.replace("[team]", imap + "[team]", 1), encoding="utf-8")
    daemon = daemon_for(config)
    remote = daemon.config.inbox_by_name("remote")
    assert remote is not None
    try:
        error = daemon.tick(remote)  # no IMAP module yet, or nothing listening on port 9
        assert error
        try:
            import maildaemon.imap  # noqa: F401
        except ModuleNotFoundError:
            assert error == IMAP_UNAVAILABLE
        assert daemon.tick(daemon.config.inboxes[0]) is None  # the others go on
        state = inbox_status(run_cli, config)
        assert state["remote"]["failing"] and not state["support"]["failing"]
    finally:
        daemon.close_store()


def test_a_job_that_raises_is_logged_and_never_escapes_the_scheduler(examples, caplog):
    daemon = daemon_for(examples / "demo.toml")

    def broken() -> None:
        raise RuntimeError("boom")

    daemon.add_job("broken", timedelta(hours=1), broken)
    with caplog.at_level(logging.ERROR, logger="maildaemon"):
        daemon.scheduler.run_all()
    assert "job broken failed: RuntimeError: boom" in caplog.text


def test_reload_refuses_a_bad_config_and_rederives_every_task_after_a_good_one(
    demo, caplog, run_cli
):
    daemon = daemon_for(demo)
    before = daemon.config
    text = demo.read_text(encoding="utf-8")
    try:
        demo.write_text(text.replace('poll_interval = "60s"', 'poll_interval = "soon"'))
        with caplog.at_level(logging.INFO, logger="maildaemon"):
            assert daemon.reload_config() is False
        assert daemon.config is before
        assert "config reload refused, keeping the running config" in caplog.text
        assert "poll_interval" in caplog.text

        caplog.clear()
        demo.write_text(text.replace('tier = "gold"', 'tier = "standard"'))
        with caplog.at_level(logging.INFO, logger="maildaemon"):
            assert daemon.reload_config() is True
        assert daemon.config.client_by_name("acme").tier == "standard"  # type: ignore[union-attr]
        changed = [
            r.getMessage() for r in caplog.records if r.getMessage().startswith("recompute: #")
        ]
        assert any("due" in line for line in changed), caplog.text
        # Written under the new config: nothing is stale, a recompute finds nothing to do.
        result = run_cli("--config", demo, "--now", DEMO_NOW, "recompute", "--dry-run")
        assert result.exit_code == 0 and "0 task(s) would change" in result.output
    finally:
        daemon.close_store()


def test_retention_drops_the_text_of_long_closed_tasks_and_keeps_the_ledger(demo, run_cli):
    closed = run_cli("--config", demo, "--now", DEMO_NOW, "close", "12", "--as", "carol")
    assert closed.exit_code == 0, closed.output

    def counts(store: Store, task_id: int) -> tuple[int, int, int]:
        one = store.conn.execute
        messages = one("SELECT COUNT(*) FROM messages WHERE task_id = ?", (task_id,)).fetchone()
        bodies = one(
            "SELECT COUNT(*) FROM bodies b JOIN messages m ON m.id = b.message "
            "WHERE m.task_id = ? AND b.text != ''",
            (task_id,),
        ).fetchone()
        events = one("SELECT COUNT(*) FROM events WHERE task_id = ?", (task_id,)).fetchone()
        return messages[0], bodies[0], events[0]

    # bodies_after = "365d"; task 12 was closed at NOW (older closed tasks go first).
    early = daemon_for(demo, clock=NOW + timedelta(days=365, hours=-1))
    try:
        early.apply_retention()
        before_closed, before_open = counts(early.store, 12), counts(early.store, 4)
        assert before_closed[1] == before_closed[0] > 0
    finally:
        early.close_store()
    late = daemon_for(demo, clock=NOW + timedelta(days=365, hours=1))
    try:
        assert late.apply_retention() == before_closed[0]
        assert counts(late.store, 12) == (before_closed[0], 0, before_closed[2])
        assert counts(late.store, 4) == before_open  # an open task keeps its text
        assert late.apply_retention() == 0
    finally:
        late.close_store()
    shown = run_cli("--config", demo, "--now", DEMO_NOW, "show", "12", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["status"] == "closed"


def test_threads_and_commands_opening_a_new_database_at_once_all_succeed(tmp_path):
    path = tmp_path / "new.db"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            Store(path).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as store:
        applied = store.query("SELECT COUNT(*) AS n FROM _sqlite_migrations")[0]["n"]
    assert applied == len(list((ROOT / "migrations").glob("*.sql")))


def test_the_loop_syncs_every_inbox_on_its_thread_until_asked_to_stop(examples):
    daemon = daemon_for(examples / "demo.toml")
    exit_code: list[int] = []
    loop = threading.Thread(target=lambda: exit_code.append(daemon.run(install_signals=False)))
    loop.start()
    try:
        mid, raw = client_mail("Picked up by the loop")
        deliver(examples / "demo-maildir" / "support", raw)
        with Store(daemon.db_path) as store:
            until(
                lambda: store.resolve_task(mid) is not None,
                what="the loop to ingest the new mail",
            )
            assert {r[0] for r in store.conn.execute("SELECT inbox FROM sources")} == {
                "support",
                "partners",
            }
    finally:
        daemon.request_stop()
        loop.join(5)
    assert not loop.is_alive() and exit_code == [0]


# -- `maildaemon run` as a subprocess ---------------------------------------------------------


def test_mail_dropped_into_new_is_ingested_without_restart_and_sigterm_exits_0(
    examples, start_daemon, run_cli
):
    config = examples / "demo.toml"
    daemon = start_daemon(config)
    until(lambda: len(task_ids(run_cli, config)) >= 10, what="the initial sync")
    mid, raw = client_mail("Daemon picks this up")
    deliver(examples / "demo-maildir" / "support", raw)
    until(lambda: mid in task_ids(run_cli, config), what="the new task")
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 3
    log = daemon.log()
    assert "SIGTERM received" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_sigint_stops_cleanly_too(examples, start_daemon):
    daemon = start_daemon(examples / "demo.toml")
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(5) == 0
    assert "SIGINT received" in daemon.log()


def test_sighup_keeps_the_old_config_when_the_new_is_broken_and_logs_changes_after_a_fix(
    examples, start_daemon, run_cli
):
    config = examples / "demo.toml"
    text = config.read_text(encoding="utf-8")
    readable = examples / "cli.toml"  # the CLI reads the same database meanwhile
    readable.write_text(text, encoding="utf-8")
    daemon = start_daemon(config)
    until(lambda: len(task_ids(run_cli, readable)) >= 10, what="the initial sync")

    config.write_text(text.replace("[[clients]]", "[[clients]\n", 1), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("config reload refused, keeping the running config")
    mid, raw = client_mail("Still syncing under the old config")
    deliver(examples / "demo-maildir" / "support", raw)
    until(lambda: mid in task_ids(run_cli, readable), what="mail after a refused reload")
    assert daemon.proc.poll() is None

    config.write_text(text.replace('tier = "gold"', 'tier = "standard"'), encoding="utf-8")
    mark = len(daemon.log())
    daemon.signal(signal.SIGHUP)
    summary = re.search(
        r"config reloaded: re-derived \d+ thread\(s\); (\d+) task\(s\) changed",
        daemon.wait_log("config reloaded: re-derived", after=mark)[mark:],
    )
    assert summary is not None and int(summary[1]) > 0

    def changes() -> list[str]:
        lines = [line for line in daemon.log()[mark:].splitlines() if "recompute: #" in line]
        return lines if len(lines) == int(summary[1]) else []

    assert any(" due " in line for line in until(changes, what="the changes logged"))
    assert daemon.stop() == 0


def test_a_failing_inbox_never_stops_the_other_and_recovers_without_restart(
    examples, start_daemon, run_cli
):
    config = examples / "demo.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("demo-maildir/partners", "later/partners"), encoding="utf-8")
    daemon = start_daemon(config)
    state = until(
        lambda: (
            (s := inbox_status(run_cli, config))["partners"]["failing"]
            and s["support"]["messages"] > 0
            and s
        ),
        what="partners failing while support synced",
    )
    assert not state["support"]["failing"]
    assert "no such maildir" in state["partners"]["last_error"]

    mid, raw = client_mail("Support keeps syncing")
    deliver(examples / "demo-maildir" / "support", raw)
    shutil.copytree(examples / "demo-maildir" / "partners", examples / "later" / "partners")
    until(lambda: mid in task_ids(run_cli, config), what="mail in the healthy inbox")
    until(
        lambda: (
            not (s := inbox_status(run_cli, config))["partners"]["failing"]
            and s["partners"]["messages"] == 3
        ),
        timeout=15,
        what="partners to recover",
    )
    assert daemon.stop() == 0
    log = daemon.log()
    assert "inbox partners: sync failed" in log and "inbox partners: recovered" in log


def _bulk_mail(count: int) -> list[bytes]:
    """``count`` real messages from the SpamAssassin corpus (easy ham), or generated ones
    where ../shared/corpus is absent."""
    tarball = CORPUS / "spamassassin-public-corpus.tar.xz"
    out: list[bytes] = []
    if tarball.exists():
        with tarfile.open(tarball) as tar:
            for member in tar:
                if "/easy-ham-1/" in member.name and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out.append(f.read())
                    if len(out) == count:
                        break
    while len(out) < count:
        out.append(client_mail(f"Bulk request {len(out)}")[1])
    return out


def test_the_cli_reads_and_writes_while_the_daemon_ingests_without_database_locked(
    examples, start_daemon, run_cli, tmp_path
):
    config = examples / "demo.toml"
    support = examples / "demo-maildir" / "support"
    daemon = start_daemon(config)
    sso = until(
        lambda: next(
            (t["id"] for t in cli_json(run_cli, config, "tasks") if t["subject"] == SSO), None
        ),
        what="the initial sync",
    )
    mail = _bulk_mail(300)

    def drop() -> None:
        for i in range(0, len(mail), 50):
            for raw in mail[i : i + 50]:
                deliver(support, raw)
            time.sleep(0.3)

    dropper = threading.Thread(target=drop)
    dropper.start()

    def stored() -> int:
        with sqlite3.connect(tmp_path / "demo.db", timeout=30) as db:
            located = db.execute("SELECT COUNT(*) FROM locations WHERE inbox = 'support'")
            quarantined = db.execute("SELECT COUNT(*) FROM quarantine WHERE inbox = 'support'")
            return int(located.fetchone()[0]) + int(quarantined.fetchone()[0])

    outputs: list[str] = []
    rounds = 0
    deadline = time.monotonic() + 20
    while dropper.is_alive() or stored() < 37 + len(mail):
        assert time.monotonic() < deadline, "the daemon did not ingest the mail in time"
        listing = run_cli("--config", config, "tasks", "--json")
        assert listing.exit_code == 0, listing.output
        json.loads(listing.stdout)
        who = ("alice", "bob")[rounds % 2]
        assigned = run_cli("--config", config, "assign", str(sso), who, "--as", "carol")
        assert assigned.exit_code == 0, assigned.output
        outputs += [listing.output, assigned.output]
        rounds += 1
    dropper.join()
    assert rounds >= 3
    assert not any("locked" in o for o in outputs)
    assert (
        cli_json(run_cli, config, "show", str(sso))["owner"] == ("alice", "bob")[(rounds - 1) % 2]
    )
    assert daemon.stop() == 0
    assert "locked" not in daemon.log()


def test_a_reload_reschedules_the_outgoing_job_by_digest_retry(examples):
    config = examples / "demo.toml"
    daemon = daemon_for(config)
    try:
        daemon.schedule_jobs()
        intervals = sorted(job.interval for job in daemon.scheduler.jobs)
        assert intervals == [30, 86400]  # outgoing mail every 30 s, retention daily
        text = config.read_text().replace("send_empty = false", 'send_empty = false\nretry = "5s"')
        config.write_text(text)
        assert daemon.reload_config()
        assert sorted(job.interval for job in daemon.scheduler.jobs) == [5, 86400]
    finally:
        daemon.close_store()
