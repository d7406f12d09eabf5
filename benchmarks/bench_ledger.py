"""`make bench` (part 2): the ledger's speed targets of the ownership issue.

- `recompute` re-deriving every task of the 10k list corpus (target <= 10 s);
- `show` of the largest thread of that corpus (target <= 0.5 s, start-up included);
- `tasks --json` on a database of 100,000 synthetic tasks (target <= 1 s, start-up included).

Each command runs as the user runs it, in a child process, timed with its start-up.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_import import CORPUS, unpack

from maildaemon.store import Store

CONFIG = """\
[daemon]
database = "{db}"
timezone = "Europe/Amsterdam"
[threading]
subject_fallback = false
[team]
domains = ["kernel.org"]
[[people]]
name = "alice"
email = "alice@example.com"
[[people]]
name = "bob"
email = "bob@example.com"
manager = true
[[clients]]
name = "acme"
domains = ["gmail.com"]
tier = "gold"
calendar = "office"
[sla.tiers.gold]
first_response = "2h"
follow_up = "4h"
handoff_ack = "2h"
[sla.tiers.standard]
first_response = "1d"
follow_up = "2d"
handoff_ack = "1d"
[calendars.office]
timezone = "Europe/Amsterdam"
hours = "Mon-Fri 09:00-17:30"
holidays = "NL"
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, p.stdout


def synthetic_tasks(db: Path, n: int, names: list[str] | None = None) -> None:
    """n tasks with owners, clients, due times and pending handoffs, straight into the store;
    each due time is also a running first-response clock."""
    Store(db).close()
    rng = random.Random(42)
    people: list[str | None] = [*(names or ["alice", "bob", "carol", "dave"]), None]
    rows = []
    for i in range(1, n + 1):
        day = 1 + i % 28
        owner = rng.choice(people)
        pending = owner is not None and rng.random() < 0.1
        rows.append(
            (
                i,
                1,
                f"<synthetic-{i}@example.com>",
                f"Synthetic task {i}",
                rng.choice(["acme", "globex", None]),
                owner,
                None,
                rng.choice(["open", "waiting", "closed"]),
                f"2026-11-{day:02d}T09:00:00Z",
                f"2026-11-{day:02d}T12:00:00Z",
                f"2026-11-{day:02d}T15:00:00Z" if rng.random() < 0.7 else None,
                int(owner is None),
                rng.randint(1, 30),
                '["support"]',
                "Someone",
                "x",
                None if not pending else people[0],
                owner if pending else None,
                f"2026-11-{day:02d}T10:00:00Z" if pending else None,
                f"2026-11-{day:02d}T12:00:00Z" if pending else None,
                None,
            )
        )
    conn = sqlite3.connect(db)
    conn.executemany(
        "INSERT INTO tasks (id, is_task, root_message_id, subject, client, owner, stage, status, "
        "opened_at, last_activity_at, due_at, orphaned, message_count, inboxes, last_from, "
        "config_fingerprint, pending_from, pending_to, pending_at, pending_due_at, flag) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO clocks (task_id, kind, started_at, due_at, outcome) "
        "VALUES (?, 'first_response', ?, ?, 'running')",
        [(r[0], r[8], r[10]) for r in rows if r[10] is not None and r[7] != "closed"],
    )
    conn.commit()
    conn.close()


def main() -> None:
    exe = shutil.which("maildaemon", path=str(Path(sys.executable).parent)) or "maildaemon"
    work = Path(tempfile.mkdtemp(prefix="maildaemon-bench-ledger-"))
    try:
        maildir = unpack(CORPUS, work)
        config = work / "bench.toml"
        config.write_text(CONFIG.format(db=work / "corpus.db"), encoding="utf-8")
        base = [exe, "--config", str(config), "--now", "2026-11-26T12:00:00Z"]
        timed([*base, "import", str(maildir)])
        wall_recompute, _ = timed([*base, "recompute", "--json"])
        conn = sqlite3.connect(work / "corpus.db")
        biggest, count = conn.execute(
            "SELECT task_id, COUNT(*) FROM messages GROUP BY task_id ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        conn.close()
        wall_show, _ = timed([*base, "show", str(biggest), "--json"])

        synthetic = work / "synthetic.db"
        synthetic_tasks(synthetic, 100_000)
        wall_tasks, out = timed(
            [exe, "--config", str(config), "--db", str(synthetic), "tasks", "--json"]
        )
        listed = len(json.loads(out))
        print(f"recompute (10k corpus, all tasks):   {wall_recompute:6.2f} s  (target <= 10 s)")
        print(f"show (largest thread, {count} msgs):   {wall_show:6.2f} s  (target <= 0.5 s)")
        print(f"tasks --json (100,000 tasks, {listed} listed): {wall_tasks:6.2f} s  (<= 1 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
