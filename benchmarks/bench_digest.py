"""`make bench` (part 4): building every digest for 100,000 tasks and 50 people (issue 5,
target <= 2 s).

"Building" is what the daemon does at the digest minute: read the tasks, their running
clocks and the inboxes' state from SQLite, build each person's digest and the team digest,
and render each as text, HTML and a MIME message. Measured in-process (best of 3), and as
`maildaemon digest --json` in a child process with its start-up, for comparison.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from bench_ledger import synthetic_tasks

from maildaemon import digest, outgoing
from maildaemon.config import load_config
from maildaemon.store import Store

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PEOPLE = 50
MANAGERS = 5


def config_text(db: Path) -> str:
    people = "".join(
        f'[[people]]\nname = "p{i:02d}"\nemail = "p{i:02d}@example.com"\n'
        f'timezone = "{["Europe/Amsterdam", "America/New_York", "Asia/Tokyo"][i % 3]}"\n'
        + ("manager = true\n" if i < MANAGERS else "")
        for i in range(PEOPLE)
    )
    return f"""\
[daemon]
database = "{db}"
timezone = "Europe/Amsterdam"
[[inboxes]]
name = "support"
maildir = "support"
[team]
domains = ["example.com"]
{people}
[[clients]]
name = "acme"
domains = ["acme.com"]
tier = "gold"
calendar = "office"
map = {{ intake = "p01", engineering = "p02" }}
[[clients]]
name = "globex"
domains = ["globex.de"]
calendar = "office"
map = {{ intake = "p03" }}
[stages]
order = ["intake", "engineering", "qa"]
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


def build_all(config_path: Path) -> tuple[float, int, int]:
    config = load_config(config_path)
    t = time.perf_counter()
    with Store(config.daemon.database) as store:
        inputs = outgoing.read_inputs(store, config, NOW)
        built = digest.build(config, inputs, NOW)
        size = 0
        for d in built:
            size += len(outgoing.render(config, d, f"<bench.{d.person}.{d.kind}@example.com>", NOW))
    return time.perf_counter() - t, len(built), size


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="maildaemon-bench-digest-"))
    try:
        db = work / "digest.db"
        synthetic_tasks(db, 100_000, [f"p{i:02d}" for i in range(PEOPLE)])
        config = work / "bench.toml"
        config.write_text(config_text(db), encoding="utf-8")
        runs = [build_all(config) for _ in range(3)]
        best, count, size = min(runs)
        tracemalloc.start()
        build_all(config)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        exe = shutil.which("maildaemon", path=str(Path(sys.executable).parent)) or "maildaemon"
        t = time.perf_counter()
        subprocess.run(
            [exe, "--config", str(config), "--now", NOW.isoformat(), "digest", "--json"],
            check=True,
            capture_output=True,
        )
        cli = time.perf_counter() - t
        print(
            f"digests for 100,000 tasks, {PEOPLE} people: {count} built and rendered "
            f"({size / 1e6:.1f} MB) in {best:5.2f} s (best of 3; runs "
            f"{', '.join(f'{r[0]:.2f}' for r in runs)}; target <= 2 s); "
            f"Python heap peak {peak / 1e6:.0f} MB"
        )
        print(f"maildaemon digest --json (child process, start-up included): {cli:5.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
