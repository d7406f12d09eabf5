"""The parser alone: ``parse_message`` over the 10k list corpus, on one core.

Prints messages/s (time inside ``parse_message`` only; files are read one at a time, outside
the clock) and the peak RSS of this process, with the RSS after imports and before the
first parse beside it. The target is 1,500 messages/s on one core, so that end-to-end
import reaches 1,000/s on two.

    python benchmarks/bench_parse.py                       # unpacks ../shared/corpus/...tar.xz
    python benchmarks/bench_parse.py /tmp/corpus/linux-ext4-10k/cur
    python benchmarks/bench_parse.py DIR --profile 25       # cProfile, the 25 costliest calls

Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maildaemon.errors import ParseError  # noqa: E402
from maildaemon.parsers import parse_message, strip_from_line  # noqa: E402

TARBALL = ROOT.parent / "shared" / "corpus" / "linux-ext4-10k.maildir.tar.xz"
TARGET = 1500.0
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def message_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def run(files: list[Path], text_cap: int) -> tuple[int, int, float]:
    parsed = refused = 0
    spent = 0.0
    clock = time.perf_counter
    for path in files:
        raw = strip_from_line(path.read_bytes())
        started = clock()
        try:
            parse_message(raw, received_at=NOW, text_cap=text_cap)
            parsed += 1
        except ParseError:
            refused += 1
        spent += clock() - started
    return parsed, refused, spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="a folder of messages (Maildir cur/)")
    parser.add_argument("--text-cap", type=int, default=16384)
    parser.add_argument("--limit", type=int, default=0, help="parse only the first N files")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="show N top calls")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        folder = args.corpus
        if folder is None:
            if not TARBALL.exists():
                print(f"no corpus given and {TARBALL} is absent", file=sys.stderr)
                return 2
            print(f"unpacking {TARBALL.name} ...", file=sys.stderr)
            with tarfile.open(TARBALL) as tar:
                tar.extractall(tmp, filter="data")
            folder = Path(tmp)
        files = message_files(folder)
        if args.limit:
            files = files[: args.limit]
        if not files:
            print(f"no files under {folder}", file=sys.stderr)
            return 2

        rss_before = peak_rss_mb()
        profile = cProfile.Profile() if args.profile else None
        if profile is not None:
            profile.enable()
        parsed, refused, spent = run(files, args.text_cap)
        if profile is not None:
            profile.disable()
        rate = len(files) / spent
        print(
            f"parse_message: {len(files)} files ({parsed} parsed, {refused} refused) "
            f"in {spent:.2f} s = {rate:,.0f} messages/s on one core "
            f"(target {TARGET:,.0f}); peak RSS {peak_rss_mb():.0f} MB "
            f"({rss_before:.0f} MB before the first parse)"
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    return 0 if rate >= TARGET or args.profile else 1


if __name__ == "__main__":
    sys.exit(main())
