"""Local mail sources: Maildir folders, mbox files and .eml files.

Each source lists *items*: a stable key, and how to read the raw bytes later (in a worker
process). Keys let a second pass skip what the store already has without reading it:
a Maildir message's key is its unique name (flags after ``:2,`` may change); an mbox or
.eml message's key is the SHA-1 of its bytes, so a rewritten mbox never hides a message.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from maildaemon.errors import UserError


@dataclass(frozen=True, slots=True)
class Item:
    """One message in a local source: where its bytes are and when it was delivered."""

    key: str
    path: str
    offset: int
    length: int  # -1: the whole file
    received_at: datetime

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.length < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.length)


def kind_of(path: Path) -> str:
    """'maildir', 'mbox' or 'eml' (a folder of .eml files, or one file)."""
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            return "maildir"
        return "eml"
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    with open(path, "rb") as f:
        head = f.read(5)
    return "mbox" if head == b"From " else "eml"


def _mtime(path: str) -> datetime:
    return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)


def maildir_items(folder: Path, skip: set[str]) -> Iterator[Item]:
    """Messages in ``cur/`` and ``new/``; ``tmp/`` holds deliveries in progress."""
    for sub in ("cur", "new"):
        d = folder / sub
        if not d.is_dir():
            continue
        # Sorted, so the first of two copies of one Message-ID is the same on every disk.
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith("."):
                continue
            key = entry.name.split(":", 1)[0]
            if key in skip:
                continue
            stamp = key.split(".", 1)[0]
            # Maildir names start with the delivery time in Unix seconds ("1763650000.M1P2.host").
            received = (
                datetime.fromtimestamp(int(stamp), UTC)
                if stamp.isdigit() and 9 <= len(stamp) <= 11
                else _mtime(entry.path)
            )
            yield Item(key, entry.path, 0, -1, received)


def eml_items(path: Path, skip: set[str]) -> Iterator[Item]:
    """One .eml file, or every file under a folder (mbox files among them split)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if p.name.startswith("."):
            continue
        data = p.read_bytes()
        if data.startswith(b"From ") and len(_mbox_starts(data)) > 1:
            yield from mbox_items(p, skip, data)
            continue
        key = "sha1:" + hashlib.sha1(data).hexdigest()
        if key not in skip:
            yield Item(key, str(p), 0, -1, _mtime(str(p)))


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


def _from_line_date(line: bytes) -> datetime | None:
    # "From sender@example.com Thu Nov 24 09:12:00 2026"
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        dt = parsedate_to_datetime(parts[2].strip())
    except (TypeError, ValueError, IndexError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _mbox_starts(data: bytes) -> list[int]:
    """Offsets of ``From `` lines at the start of the file or after a blank line."""
    return [
        m.start()
        for m in _FROM_LINE.finditer(data)
        if m.start() == 0
        or data[max(0, m.start() - 2) : m.start()] == b"\n\n"
        or data[max(0, m.start() - 4) : m.start()] == b"\r\n\r\n"
    ]


def mbox_items(path: Path, skip: set[str], data: bytes | None = None) -> Iterator[Item]:
    """Messages of an mbox file, split at ``From `` lines that follow a blank line."""
    if data is None:
        data = path.read_bytes()
    starts = _mbox_starts(data)
    fallback = _mtime(str(path))
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        chunk = data[start:end]
        key = "sha1:" + hashlib.sha1(chunk).hexdigest()
        if key in skip:
            continue
        first_line = chunk.split(b"\n", 1)[0]
        yield Item(key, str(path), start, end - start, _from_line_date(first_line) or fallback)


def items(path: Path, skip: set[str]) -> Iterator[Item]:
    kind = kind_of(path)
    if kind == "maildir":
        return maildir_items(path, skip)
    if kind == "mbox":
        return mbox_items(path, skip)
    return eml_items(path, skip)
