"""The store: migrations, schema snapshot, pragmas, and the installed wheel carrying its SQL."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from maildaemon.store import Store, migration_files

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "data" / "schema.sql"


def schema(store: Store) -> str:
    rows = store.conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY type DESC, name"
    )
    return "\n".join(r[0].strip() + ";" for r in rows) + "\n"


def test_schema_matches_the_checked_in_snapshot(tmp_path):
    with Store(tmp_path / "s.db") as store:
        actual = schema(store)
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(actual, encoding="utf-8")
    assert actual == SNAPSHOT.read_text(encoding="utf-8"), (
        "schema changed: add a new migration (never edit a shipped one), then run "
        "UPDATE_SNAPSHOT=1 pytest tests/test_store.py to refresh tests/data/schema.sql"
    )


def test_every_migration_is_applied_once_and_recorded(tmp_path):
    with Store(tmp_path / "s.db") as store:
        applied = [r[0] for r in store.conn.execute("SELECT name FROM _sqlite_migrations")]
    with Store(tmp_path / "s.db") as store:
        again = [r[0] for r in store.conn.execute("SELECT name FROM _sqlite_migrations")]
    names = [n.removesuffix(".sql") for n, _ in migration_files()]
    assert applied == names == again
    assert names == sorted(names) and names[0] == "0001_initial"


def test_database_runs_in_wal_with_busy_timeout_and_normal_sync(tmp_path):
    with Store(tmp_path / "s.db") as store:
        c = store.conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_failed_write_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(RuntimeError), store.write() as c:
            c.execute("INSERT INTO sources (inbox, source) VALUES ('x', 'y')")
            raise RuntimeError("crash mid-batch")
        assert store.conn.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 0


@pytest.mark.slow
def test_installed_wheel_carries_the_migrations(tmp_path):
    """Build a wheel, install it in a fresh venv, and create a database with it."""
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheel = next(dist.glob("maildaemon-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies come from the test venv; maildaemon itself only from the wheel.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    script = (
        "import maildaemon, sys; from maildaemon.store import Store\n"
        "assert maildaemon.__file__.startswith(sys.argv[1]), maildaemon.__file__\n"
        "s = Store('fresh.db')\n"
        "q = \"SELECT name FROM sqlite_master WHERE type='table'\"\n"
        "print(sorted(r[0] for r in s.conn.execute(q)))\n"
    )
    out = subprocess.run(
        [py, "-c", script, site],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout
    for table in ("messages", "tasks", "locations", "quarantine", "events"):
        assert f"'{table}'" in out
