"""Business time in one calendar: working windows, holidays and DST, without a clock (SPEC 7).

A ``BusinessCalendar`` turns a config ``Calendar`` into working windows per local date, each
converted to a pair of UTC instants once and cached, so ``add`` and ``between`` walk days by
dictionary lookups (whole days after the start are skipped by their total). Every datetime in or
out is aware; results are UTC. Working time is the half-open union of the windows: 17:00 is not a
working moment, yet a deadline may land on it.

Decisions the SPEC left open:

- ``day_length`` (what ``1d`` means) is the working time of a day (the sum of its windows, so a
  lunch break counts out) that is most common over the weekdays Mon-Fri that have hours; on a tie
  the longer one wins; a calendar with no hours on Mon-Fri uses all its days. It is counted in
  wall-clock hours, so a 09:00-17:00 day is 8h also on a DST day, and ``1w`` is 5 x ``day_length``.
- Windows are local wall-clock times turned into instants on each date: a 09:00-17:00 day is 8
  real hours on the day of a DST change too. A window edge inside a DST gap is read with the offset
  before the change and one at an ambiguous time takes its first occurrence (``fold=0``); a window
  that becomes empty that way is dropped.
- A holiday (``Calendar.is_holiday`` on the local date) has no windows.
- A deadline counts from the next working moment, so ``add(t, d)`` at zero is ``next_working(t)``,
  and a start exactly at a closing time counts from the next opening.
- ``always(tz)`` (no ``default_calendar``) is 24/7 in ``tz``: ``add`` is plain UTC arithmetic,
  ``day_length`` is 24h, and ``end_of_day`` is the next local midnight.
- ``add``, ``next_working`` and ``end_of_day`` walk at most three years of days and then raise
  ``ValueError`` (a calendar whose holidays cover everything, or an absurd duration); ``between``
  walks its own finite span. A calendar without any hours is a ``ValueError`` when it is built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from maildaemon import config
from maildaemon.durations import BusinessDuration

__all__ = ["BusinessCalendar"]

_Window = tuple[datetime, datetime]  # UTC [start, end)
_Day = tuple[tuple[_Window, ...], timedelta]  # a date's windows and their total
_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_MAX_DAYS = 3 * 366  # how far add / next_working / end_of_day walk before giving up
_CACHE_DAYS = 20_000  # dates kept per calendar before the cache starts over
_MIDNIGHT = time(0)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"business time needs an aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC)


def _length(start: time, end: time) -> timedelta:
    return timedelta(hours=end.hour - start.hour, minutes=end.minute - start.minute)


def _usual_day(week: tuple[tuple[tuple[time, time], ...], ...]) -> timedelta:
    """The most common working time per day over Mon-Fri (all days if Mon-Fri has none)."""
    spans = [sum((_length(s, e) for s, e in day), _ZERO) for day in week]
    counts = Counter(span for span in spans[:5] if span) or Counter(span for span in spans if span)
    return max(counts, key=lambda span: (counts[span], span))


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Working time in one calendar; build with ``from_config`` or ``always``, both cached."""

    name: str
    zone: ZoneInfo
    week: tuple[tuple[tuple[time, time], ...], ...]  # per weekday (0 = Monday): (start, end)
    day_length: timedelta
    calendar: config.Calendar | None = None  # None: 24/7, no holidays
    _days: dict[date, _Day] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_config(cls, cal: config.Calendar) -> BusinessCalendar:
        return _from_config(cal)

    @classmethod
    def always(cls, tz: str) -> BusinessCalendar:
        return _always(tz)

    @classmethod
    def _build(cls, cal: config.Calendar) -> BusinessCalendar:
        if not cal.hours:
            raise ValueError(f"calendar {cal.name!r} has no working hours")
        week = tuple(tuple((w.start, w.end) for w in cal.hours if w.weekday == d) for d in range(7))
        return cls(cal.name, ZoneInfo(cal.timezone), week, _usual_day(week), cal)

    # --- per-date windows ----------------------------------------------------------------------

    def _day(self, day: date) -> _Day:
        hit = self._days.get(day)
        if hit is None:
            if len(self._days) >= _CACHE_DAYS:
                self._days.clear()
            hit = self._days[day] = self._windows(day)
        return hit

    def _windows(self, day: date) -> _Day:
        if self.calendar is None:  # 24/7: local midnight to local midnight (23h or 25h on DST days)
            pairs = [
                (datetime.combine(day, _MIDNIGHT), datetime.combine(day + _ONE_DAY, _MIDNIGHT))
            ]
        elif self.calendar.is_holiday(day):
            return (), _ZERO
        else:
            pairs = [
                (datetime.combine(day, s), datetime.combine(day, e))
                for s, e in self.week[day.weekday()]
            ]
        windows = []
        for start, end in pairs:
            ws = start.replace(tzinfo=self.zone).astimezone(UTC)
            we = end.replace(tzinfo=self.zone).astimezone(UTC)
            if we > ws:
                windows.append((ws, we))
        return tuple(windows), sum((we - ws for ws, we in windows), _ZERO)

    def _local_date(self, t: datetime) -> date:
        return t.astimezone(self.zone).date()

    def _gave_up(self, what: str, t: datetime) -> ValueError:
        return ValueError(
            f"calendar {self.name!r}: {what} not found within 3 years of {t.isoformat()}"
            " (no working time in its hours and holidays, or the duration is too long)"
        )

    # --- the API -------------------------------------------------------------------------------

    def working_time(self, d: BusinessDuration) -> timedelta:
        """The working time ``d`` stands for: ``d`` is ``day_length``, ``w`` five of them."""
        if d.unit == "m":
            return timedelta(minutes=d.amount)
        if d.unit == "h":
            return timedelta(hours=d.amount)
        if d.unit == "d":
            return d.amount * self.day_length
        if d.unit == "w":
            return 5 * d.amount * self.day_length
        raise ValueError(f"unknown business duration unit {d.unit!r}; expected m, h, d or w")

    def is_working(self, t: datetime) -> bool:
        s = _utc(t)
        return any(ws <= s < we for ws, we in self._day(self._local_date(s))[0])

    def next_working(self, t: datetime) -> datetime:
        """``t`` (in UTC) if it is a working moment, else the next opening."""
        s = _utc(t)
        day = self._local_date(s)
        for _ in range(_MAX_DAYS):
            for ws, we in self._day(day)[0]:
                if s < we:
                    return ws if ws > s else s
            day += _ONE_DAY
        raise self._gave_up("a working moment", s)

    def add(self, start: datetime, d: BusinessDuration) -> datetime:
        """The deadline ``d`` of working time after ``start``, counting from the next working
        moment; it may land exactly on a closing time."""
        return self.add_td(start, self.working_time(d))

    def add_td(self, start: datetime, amount: timedelta) -> datetime:
        """Like ``add`` with a plain amount of working time (not negative)."""
        if amount < _ZERO:
            raise ValueError(f"cannot add a negative amount of working time ({amount})")
        s = _utc(start)
        if self.calendar is None:
            return s + amount
        day = self._local_date(s)
        left = amount
        for _ in range(_MAX_DAYS):
            windows, total = self._day(day)
            if windows and windows[0][0] >= s and total < left:  # the whole day fits: skip it
                left -= total
            else:
                for ws, we in windows:
                    if we <= s:
                        continue
                    begin = ws if ws > s else s
                    if left <= we - begin:
                        return begin + left
                    left -= we - begin
            day += _ONE_DAY
        raise self._gave_up(f"a deadline {amount} ahead", s)

    def between(self, a: datetime, b: datetime) -> timedelta:
        """The working time in ``[a, b)``; zero when ``b <= a``. The inverse of ``add_td``."""
        s, e = _utc(a), _utc(b)
        if e <= s:
            return _ZERO
        if self.calendar is None:
            return e - s
        day, last = self._local_date(s), self._local_date(e)
        out = _ZERO
        while day <= last:
            windows, total = self._day(day)
            if windows and windows[0][0] >= s and windows[-1][1] <= e:
                out += total
            else:
                for ws, we in windows:
                    lo, hi = (ws if ws > s else s), (we if we < e else e)
                    if hi > lo:
                        out += hi - lo
            day += _ONE_DAY
        return out

    def end_of_day(self, day: date) -> datetime:
        """Closing time of ``day``'s last window, or of the next working day's if it has none."""
        first = day
        for _ in range(_MAX_DAYS):
            windows = self._day(day)[0]
            if windows:
                return windows[-1][1]
            day += _ONE_DAY
        raise self._gave_up("a working day", datetime.combine(first, _MIDNIGHT, self.zone))


@lru_cache(maxsize=128)
def _from_config(cal: config.Calendar) -> BusinessCalendar:
    return BusinessCalendar._build(cal)


@lru_cache(maxsize=32)
def _always(tz: str) -> BusinessCalendar:
    week = ((),) * 7  # unused: 24/7 windows are built from local midnights
    return BusinessCalendar(f"24/7 {tz}", ZoneInfo(tz), week, timedelta(hours=24))
