"""`maildaemon backup PATH` (SPEC 10): a consistent copy while another process writes; and
the shipped example configs (config/) pass `config check` with no secret in the environment."""

from __future__ import annotations

import configparser
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from maildaemon.store import Store

ROOT = Path(__file__).resolve().parents[1]
DEMO_NOW = "2026-11-24T16:30:00Z"


def check_copy(path: Path) -> dict[str, int]:
    """The copy opens on its own (no -wal beside it), is intact; its counts."""
    assert not Path(f"{path}-wal").exists()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        return {
            table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("messages", "tasks", "locations", "bodies")
        }


def check_copy_of(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        return {
            table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("messages", "tasks", "locations", "bodies")
        }


def test_backup_while_another_process_writes_is_consistent(demo, tmp_path, run_cli):
    db = tmp_path / "demo.db"
    base = check_copy_of(db)
    assert base["tasks"] > 0
    # Another process writes all the time: inserts messages with their bodies and
    # locations in transactions, as a sync does.
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing"
        copies = []
        for n in range(5):
            path = tmp_path / f"copy-{n}.db"
            result = run_cli("--config", demo, "backup", path)
            assert result.exit_code == 0, result.output
            assert "backed up" in result.stderr
            copies.append(check_copy(path))
            time.sleep(0.05)
    finally:
        writer.terminate()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()
    for counts in copies:
        # Every batch is whole in a copy: each new message has its body and its location.
        added = {k: counts[k] - base[k] for k in ("messages", "bodies", "locations")}
        assert added["messages"] == added["bodies"] == added["locations"], counts
        assert added["messages"] % 20 == 0
        assert counts["tasks"] == base["tasks"]
    assert copies[-1]["messages"] > copies[0]["messages"], "the writer was not writing"
    shown = run_cli("--db", tmp_path / "copy-4.db", "--config", demo, "--now", DEMO_NOW, "tasks")
    assert shown.exit_code == 0 and "SSO login loop" in shown.output


WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("PRAGMA busy_timeout = 30000")
cols = [r[1] for r in db.execute("PRAGMA table_info(messages)")]
template = db.execute("SELECT * FROM messages LIMIT 1").fetchone()
print("writing", flush=True)
n = 0
while True:
    db.execute("BEGIN IMMEDIATE")
    for _ in range(20):
        n += 1
        row = dict(zip(cols, template))
        row.pop("id")
        row["message_id"] = f"<backup-writer-{n}@example.com>"
        row["task_id"] = None
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = db.execute(f"INSERT INTO messages ({names}) VALUES ({marks})", list(row.values()))
        db.execute(
            "INSERT INTO bodies (message, text, reply_text) VALUES (?, ?, ?)",
            (cur.lastrowid, "x" * 2000, ""),
        )
        db.execute(
            "INSERT INTO locations (message, inbox, source, key, seen_at) "
            "VALUES (?, 'support', 'writer', ?, '2026-11-24T16:30:00Z')",
            (cur.lastrowid, str(n)),
        )
    db.execute("COMMIT")
    time.sleep(0.002)
"""


def test_backup_while_the_daemon_ingests_a_maildir(demo, tmp_path, run_cli):
    """`maildaemon run` importing mail meanwhile: the copy is intact and has the tasks."""
    text = demo.read_text(encoding="utf-8").replace('poll_interval = "60s"', 'poll_interval = "1s"')
    demo.write_text(text, encoding="utf-8")
    support = demo.parent / "demo-maildir" / "support"
    for n in range(300):
        raw = (
            f"From: Pat <pat@acme.com>\r\nTo: support@example.com\r\n"
            f"Subject: Backup load {n}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <backup-load-{n}@acme.com>\r\n\r\nPlease look at {n}.\r\n"
        ).encode()
        (support / "new" / f"1764000000.M{n}P1.backup").write_bytes(raw)
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "maildaemon", "--config", str(demo), "run"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        copies = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            path = tmp_path / f"live-{len(copies)}.db"
            result = run_cli("--config", demo, "backup", path)
            assert result.exit_code == 0, result.output
            copies.append(check_copy(path))
            if copies[-1]["messages"] >= 300 + 37 and len(copies) >= 3:
                break
            time.sleep(0.1)
        assert copies[-1]["messages"] >= 300, copies
    finally:
        daemon.terminate()
        assert daemon.wait(15) == 0
        log.close()
    assert "locked" not in (tmp_path / "daemon.log").read_text(encoding="utf-8")
    with closing(sqlite3.connect(tmp_path / f"live-{len(copies) - 1}.db")) as db:
        subjects = {r[0] for r in db.execute("SELECT subject FROM tasks WHERE is_task = 1")}
    assert "SSO login loop after password reset" in subjects


def test_backup_refuses_to_overwrite_and_needs_a_database(demo, tmp_path, run_cli, write_config):
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep me")
    result = run_cli("--config", demo, "backup", existing)
    assert result.exit_code == 1 and "exists" in result.stderr
    assert existing.read_bytes() == b"keep me"
    result = run_cli("--config", demo, "backup", tmp_path / "no" / "such" / "x.db")
    assert result.exit_code == 1
    missing = write_config()  # its database was never created
    result = run_cli("--config", missing, "backup", tmp_path / "y.db")
    assert result.exit_code == 1 and "no database" in result.stderr
    assert not (tmp_path / "y.db").exists() and not (tmp_path / "md.db").exists()


def test_store_backup_refuses_an_existing_file(tmp_path):
    with Store(tmp_path / "a.db") as store:
        (tmp_path / "b.db").write_text("x")
        with pytest.raises(Exception, match="exists"):
            store.backup(tmp_path / "b.db")
        assert store.backup(tmp_path / "c.db") > 0
    check_copy(tmp_path / "c.db")


# -- config/ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gmail.toml", "microsoft365.toml", "example.toml"])
def test_the_example_configs_pass_config_check_without_any_secret(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_PASSWORD", "_TOKEN"))}
    env.pop("MAILDAEMON_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "maildaemon", "--config", str(ROOT / "config" / name),
         "config", "check"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if name != "example.toml":
        assert 'auth = "xoauth2"' in done.stdout
        assert "<redacted>" in done.stdout and "oama" not in done.stdout


def test_the_systemd_unit_runs_the_daemon_as_its_own_user_with_hardening():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "config" / "maildaemon.service", encoding="utf-8")
    service = unit["Service"]
    assert service["Type"] == "simple"
    assert service["ExecStart"].endswith(" run") and "--config" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert service["User"] != "root" and "EnvironmentFile" in service
    assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"]
