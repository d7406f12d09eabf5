"""The small grammars of the config: durations, sizes, weekdays, clock times and working hours.

Parsers raise ``ValueError`` with a message that says what is allowed; ``config.py`` adds the
key path and the bad value. Each parser has a formatter that gives back the canonical text, so a
parsed config can be printed back (``maildaemon config check``) and fingerprinted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import time, timedelta

__all__ = [
    "WEEKDAYS",
    "BusinessDuration",
    "WorkingHours",
    "format_clock",
    "format_days",
    "format_hours",
    "format_size",
    "format_wall_duration",
    "parse_business_duration",
    "parse_clock",
    "parse_days",
    "parse_hours",
    "parse_size",
    "parse_wall_duration",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WALL_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first, for formatting
_SIZE_UNITS = {
    "mb": 1024 * 1024,
    "mib": 1024 * 1024,
    "kb": 1024,
    "kib": 1024,
    "k": 1024,
    "m": 1024 * 1024,
    "b": 1,
    "": 1,
}
_AMOUNT_UNIT = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*\Z")
_CLOCK = re.compile(r"\s*(\d{1,2}):(\d{2})\s*\Z")
_SEGMENT = re.compile(r"\s*([A-Za-z]+(?:\s*-\s*[A-Za-z]+)?)\s+(\S+?)\s*-\s*(\S+)\s*\Z")


@dataclass(frozen=True, slots=True)
class BusinessDuration:
    """An SLA target in business time: ``m``/``h`` working minutes/hours, ``d`` working days,
    ``w`` five working days. What a working day is belongs to the calendar."""

    amount: int
    unit: str

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """One window of working time on one weekday (0 = Monday), local to its calendar."""

    weekday: int
    start: time
    end: time


def _duration(text: str, units: Collection[str], expected: str) -> tuple[int, str]:
    """A whole number above zero and one of ``units``; ``expected`` says what is allowed."""
    m = _AMOUNT_UNIT.match(text)
    if m is None or m[2] not in units:
        raise ValueError(expected)
    if int(m[1]) == 0:
        raise ValueError("a duration must be more than zero")
    return int(m[1]), m[2]


def parse_business_duration(text: str) -> BusinessDuration:
    """``"2h"`` -> BusinessDuration(2, "h"). Units m, h, d, w; a whole number above zero."""
    expected = (
        "expected a business duration: a whole number and a unit m (minutes), h (hours), "
        'd (working days) or w (5 working days), e.g. "2h" or "1d"'
    )
    return BusinessDuration(*_duration(text, ("m", "h", "d", "w"), expected))


def parse_wall_duration(text: str) -> timedelta:
    """``"60s"`` -> timedelta(seconds=60). Units s, m, h, d; a whole number above zero."""
    expected = (
        "expected a wall-clock duration: a whole number and a unit s, m, h or d, "
        'e.g. "60s", "5m" or "365d"'
    )
    amount, unit = _duration(text, _WALL_UNITS, expected)
    return timedelta(seconds=amount * _WALL_UNITS[unit])


def format_wall_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in _WALL_UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def parse_size(text: str) -> int:
    """``"16KB"`` -> 16384 bytes. KB = 1024 bytes; units B, KB, MB (or none: bytes)."""
    m = _AMOUNT_UNIT.match(text)
    if m is None or m[2].lower() not in _SIZE_UNITS:
        raise ValueError('expected a size: a whole number and B, KB or MB, e.g. "16KB" or "4096"')
    size = int(m[1]) * _SIZE_UNITS[m[2].lower()]
    if size == 0:
        raise ValueError("a size must be more than zero")
    return size


def format_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def parse_clock(text: str) -> time:
    """``"08:00"`` -> time(8, 0); 00:00 to 23:59."""
    m = _CLOCK.match(text)
    if m is None or int(m[1]) > 23 or int(m[2]) > 59:
        raise ValueError('expected a time of day HH:MM from 00:00 to 23:59, e.g. "08:00"')
    return time(int(m[1]), int(m[2]))


def format_clock(value: time) -> str:
    return value.strftime("%H:%M")


def _weekday(name: str) -> int:
    low = name.strip().lower()
    for i, full in enumerate(_FULL_DAYS):
        if low in (full, full[:3]):
            return i
    raise ValueError(f"unknown weekday {name.strip()!r}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun")


def _day_range(text: str) -> list[int]:
    """``"Mon-Fri"`` or ``"Sat"``; a range may wrap past Sunday (``"Sun-Thu"``)."""
    first, sep, last = text.partition("-")
    start = _weekday(first)
    end = _weekday(last) if sep else start
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def parse_days(text: str) -> tuple[int, ...]:
    """``"Mon-Fri"``, ``"Mon, Wed, Fri"``, ``"Sun-Thu"`` -> sorted weekdays, 0 = Monday."""
    days: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            raise ValueError(
                'expected weekdays like "Mon-Fri" or "Mon, Wed, Fri"; found an empty part'
            )
        days.update(_day_range(part))
    return tuple(sorted(days))


def _runs(days: tuple[int, ...]) -> list[str]:
    """Consecutive weekdays grouped: (0, 1, 2, 4) -> ["Mon-Wed", "Fri"]."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return [WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs]


def format_days(days: tuple[int, ...]) -> str:
    return ", ".join(_runs(days))


def parse_hours(text: str) -> tuple[WorkingHours, ...]:
    """``"Mon-Thu 09:00-17:00, Fri 09:00-13:00"`` -> windows sorted by weekday and start.

    Windows of one day may not overlap; each starts before it ends.
    """
    windows: list[WorkingHours] = []
    for segment in text.split(","):
        m = _SEGMENT.match(segment)
        if m is None:
            raise ValueError(
                'expected working hours like "Mon-Fri 09:00-17:00" or '
                f'"Mon-Thu 09:00-17:00, Fri 09:00-13:00"; cannot read {segment.strip()!r}'
            )
        start, end = parse_clock(m[2]), parse_clock(m[3])
        if start >= end:
            raise ValueError(f"{segment.strip()!r}: a window must start before it ends")
        windows.extend(WorkingHours(day, start, end) for day in _day_range(m[1]))
    windows.sort(key=lambda w: (w.weekday, w.start))
    for a, b in itertools.pairwise(windows):
        if a.weekday == b.weekday and b.start < a.end:
            raise ValueError(f"two windows overlap on {WEEKDAYS[a.weekday]}")
    return tuple(windows)


def format_hours(hours: tuple[WorkingHours, ...]) -> str:
    """The canonical text of ``hours``: days with the same window grouped into ranges."""
    by_window: dict[tuple[time, time], list[int]] = {}
    for w in hours:
        by_window.setdefault((w.start, w.end), []).append(w.weekday)
    segments: list[str] = []
    for (start, end), days in sorted(by_window.items(), key=lambda item: (min(item[1]), item[0])):
        window = f"{format_clock(start)}-{format_clock(end)}"
        segments.extend(f"{run} {window}" for run in _runs(tuple(days)))
    return ", ".join(segments)
