"""`make bench`: import the 10k list corpus end to end and compare with the floors.

Prints messages/s, wall time and peak RSS of `maildaemon import` (run as the user runs
it, in a child process), the time of a second import of the same mail, the bare stdlib
header parse of the same files (the Python floor) and, when notmuch is installed,
`notmuch new` on the same Maildir. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "linux-ext4-10k.maildir.tar.xz"


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    return next(p for p in into.iterdir() if p.is_dir())


def timed_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB, the largest process of the run) of one command."""
    script = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([wall, rss, p.returncode, p.stderr[-2000:]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *cmd], capture_output=True, text=True, env=env, check=True
    )
    import json

    wall, rss, code, err = json.loads(out.stdout)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    return wall, rss, err


def stdlib_floor(maildir: Path) -> tuple[float, int]:
    parser = BytesHeaderParser(policy=policy.compat32)
    files = [p for sub in ("cur", "new") for p in (maildir / sub).iterdir()]
    t = time.perf_counter()
    for p in files:
        parser.parsebytes(p.read_bytes())
    return time.perf_counter() - t, len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"corpus not found: {args.corpus}")
    exe = shutil.which("maildaemon", path=str(Path(sys.executable).parent)) or "maildaemon"
    work = Path(tempfile.mkdtemp(prefix="maildaemon-bench-"))
    try:
        print(f"unpacking {args.corpus.name} ...", file=sys.stderr)
        maildir = unpack(args.corpus, work)
        config = work / "bench.toml"
        config.write_text(
            '[daemon]\ndatabase = "bench.db"\n[threading]\nsubject_fallback = false\n',
            encoding="utf-8",
        )
        base = [exe, "--config", str(config)]
        wall, rss, _ = timed_child([*base, "import", str(maildir)])
        db = sqlite3.connect(work / "bench.db")
        n = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        threads = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        tasks = db.execute("SELECT COUNT(*) FROM tasks WHERE is_task = 1").fetchone()[0]
        quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        db.close()
        wall2, rss2, _ = timed_child([*base, "import", str(maildir)])
        t_tasks, rss_tasks, _ = timed_child([*base, "tasks", "--json", "--status", "all"])
        floor, files = stdlib_floor(maildir)

        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        print(
            f"files: {files}; stored messages: {n}; threads: {threads}; tasks: {tasks}; "
            f"quarantined: {quarantined}"
        )
        print(
            f"import:          {wall:7.2f} s  {files / wall:7.0f} messages/s  "
            f"peak RSS {rss:6.1f} MB"
        )
        print(f"second import:   {wall2:7.2f} s  peak RSS {rss2:6.1f} MB")
        print(f"tasks --json:    {t_tasks:7.2f} s  peak RSS {rss_tasks:6.1f} MB")
        print(
            f"stdlib headers:  {floor:7.2f} s  {files / floor:7.0f} messages/s  "
            f"(import / floor = {wall / floor:.2f}x)"
        )
        if shutil.which("notmuch"):
            nm = work / "notmuch"
            nm.mkdir()
            cfg = nm / "config"
            cfg.write_text(f"[database]\npath={maildir}\n[new]\ntags=unread;\n", encoding="utf-8")
            env = {**os.environ, "NOTMUCH_CONFIG": str(cfg)}
            t_nm, rss_nm, _ = timed_child(["notmuch", "new", "--quiet"], env=env)
            print(
                f"notmuch new:     {t_nm:7.2f} s  {files / t_nm:7.0f} messages/s  "
                f"peak RSS {rss_nm:6.1f} MB  (import is {t_nm / wall:.1f}x faster)"
            )
        else:
            print("notmuch new:     not installed (apt-get install notmuch to compare)")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
