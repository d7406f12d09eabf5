"""Business time in a calendar: deadlines across weekends, holidays and DST (SPEC section 7)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildaemon.businesstime import BusinessCalendar
from maildaemon.config import Calendar, parse_config
from maildaemon.durations import BusinessDuration

NY = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")
TOKYO = ZoneInfo("Asia/Tokyo")

CONFIG = """
[calendars.us-east]
timezone = "America/New_York"
hours = "Mon-Fri 09:00-17:00"
holidays = "US"

[calendars.us-east-7d]
timezone = "America/New_York"
hours = "Mon-Sun 08:00-20:00"

[calendars.office]
timezone = "Europe/Amsterdam"
hours = "Mon-Fri 09:00-17:00"
holidays = ["2026-12-24"]

[calendars.office-7d]
timezone = "Europe/Amsterdam"
hours = "Mon-Sun 09:00-17:00"

[calendars.tokyo]
timezone = "Asia/Tokyo"
hours = "Mon-Fri 09:00-18:00"
holidays = "JP"

[calendars.lunch]
timezone = "America/New_York"
hours = "Mon-Fri 09:00-12:00, Mon-Fri 13:00-17:00"
holidays = "US"
"""
CALENDARS = parse_config(CONFIG).calendars


def cal(name: str) -> BusinessCalendar:
    return BusinessCalendar.from_config(CALENDARS[name])


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A local wall-clock time in ``zone``."""
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def h(n: int) -> BusinessDuration:
    return BusinessDuration(n, "h")


def test_two_hours_from_friday_afternoon_land_monday_morning() -> None:
    due = cal("us-east").add(at(NY, 2026, 1, 9, 16), h(2))
    assert due == at(NY, 2026, 1, 12, 10)
    assert due.tzinfo is UTC


def test_us_thanksgiving_is_skipped() -> None:
    due = cal("us-east").add(at(NY, 2026, 11, 25, 15), h(4))
    assert due == at(NY, 2026, 11, 27, 11)


def test_japanese_labor_thanksgiving_day_is_skipped() -> None:
    due = cal("tokyo").add(at(TOKYO, 2026, 11, 20, 17), h(2))
    assert due == at(TOKYO, 2026, 11, 24, 10)


def test_one_day_across_the_us_fall_back_weekend_lands_at_the_local_time() -> None:
    start = at(NY, 2026, 10, 30, 13)  # Friday, EDT (UTC-4)
    due = cal("us-east").add(start, BusinessDuration(1, "d"))
    assert due == datetime(2026, 11, 2, 18, tzinfo=UTC)  # Monday 13:00 EST (UTC-5)
    assert due.astimezone(NY).hour == 13


def test_one_day_across_the_eu_spring_forward_weekend_lands_at_the_local_time() -> None:
    start = at(AMS, 2026, 3, 27, 13)  # Friday, CET (UTC+1)
    due = cal("office").add(start, BusinessDuration(1, "d"))
    assert due == datetime(2026, 3, 30, 11, tzinfo=UTC)  # Monday 13:00 CEST (UTC+2)


def test_a_window_on_the_day_of_a_dst_change_keeps_its_local_hours() -> None:
    us = cal("us-east-7d")  # Sunday 2026-11-01: clocks fall back at 02:00
    assert us.next_working(at(NY, 2026, 11, 1, 0)) == datetime(2026, 11, 1, 13, tzinfo=UTC)
    assert us.end_of_day(date(2026, 11, 1)) == datetime(2026, 11, 2, 1, tzinfo=UTC)
    assert us.between(at(NY, 2026, 11, 1, 0), at(NY, 2026, 11, 2, 0)) == timedelta(hours=12)
    assert us.add(at(NY, 2026, 11, 1, 8), h(12)) == at(NY, 2026, 11, 1, 20)
    eu = cal("office-7d")  # Sunday 2026-03-29: clocks spring forward at 02:00
    assert eu.next_working(at(AMS, 2026, 3, 29, 0)) == datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert eu.end_of_day(date(2026, 3, 29)) == datetime(2026, 3, 29, 15, tzinfo=UTC)
    assert eu.between(at(AMS, 2026, 3, 29, 0), at(AMS, 2026, 3, 30, 0)) == timedelta(hours=8)


def test_a_message_outside_working_hours_starts_counting_at_the_next_opening() -> None:
    c = cal("us-east")
    saturday = at(NY, 2026, 1, 10, 12)
    assert not c.is_working(saturday)
    assert c.next_working(saturday) == at(NY, 2026, 1, 12, 9)
    assert c.add(saturday, h(2)) == at(NY, 2026, 1, 12, 11)
    late = at(NY, 2026, 1, 13, 22)
    assert c.next_working(late) == at(NY, 2026, 1, 14, 9)
    assert c.add(late, h(2)) == at(NY, 2026, 1, 14, 11)
    assert c.add(late, BusinessDuration(30, "m")) == at(NY, 2026, 1, 14, 9, 30)


def test_a_working_moment_is_its_own_next_working_moment() -> None:
    c = cal("us-east")
    t = at(NY, 2026, 1, 13, 10, 15)
    assert c.is_working(t)
    assert c.next_working(t) == t


def test_clients_in_different_zones_get_different_deadlines_for_the_same_start() -> None:
    start = datetime(2026, 1, 12, 15, tzinfo=UTC)  # Monday: 10:00 New York, 16:00 Amsterdam
    assert cal("us-east").add(start, h(2)) == datetime(2026, 1, 12, 17, tzinfo=UTC)
    assert cal("office").add(start, h(2)) == datetime(2026, 1, 13, 9, tzinfo=UTC)


def test_a_working_day_is_the_calendars_usual_day_length() -> None:
    assert cal("us-east").day_length == timedelta(hours=8)
    assert cal("tokyo").day_length == timedelta(hours=9)
    assert cal("us-east-7d").day_length == timedelta(hours=12)
    assert cal("lunch").day_length == timedelta(hours=7)
    assert BusinessCalendar.always("UTC").day_length == timedelta(hours=24)
    day = BusinessDuration(1, "d")
    assert cal("us-east").add(at(NY, 2026, 1, 13, 9), day) == at(NY, 2026, 1, 13, 17)
    assert cal("tokyo").add(at(TOKYO, 2026, 1, 13, 9), day) == at(TOKYO, 2026, 1, 13, 18)
    assert cal("us-east").add(at(NY, 2026, 1, 13, 12), day) == at(NY, 2026, 1, 14, 12)


def test_day_length_is_the_most_common_weekday_not_the_longest() -> None:
    text = """
[calendars.long-monday]
timezone = "UTC"
hours = "Mon 09:00-18:00, Tue-Fri 09:00-17:00, Sat 09:00-19:00"

[calendars.short-friday]
timezone = "UTC"
hours = "Mon-Thu 09:00-17:00, Fri 09:00-13:00"

[calendars.weekends]
timezone = "UTC"
hours = "Sat-Sun 10:00-14:00"
"""
    calendars = parse_config(text).calendars
    lengths = {n: BusinessCalendar.from_config(c).day_length for n, c in calendars.items()}
    assert lengths == {
        "long-monday": timedelta(hours=8),
        "short-friday": timedelta(hours=8),
        "weekends": timedelta(hours=4),
    }


def test_a_working_week_is_five_working_days() -> None:
    c = cal("us-east")
    assert c.add(at(NY, 2026, 1, 12, 9), BusinessDuration(1, "w")) == at(NY, 2026, 1, 16, 17)
    # two weeks from a Wednesday, with Martin Luther King Jr. Day (Monday 2026-01-19) inside
    assert c.add(at(NY, 2026, 1, 14, 13), BusinessDuration(2, "w")) == at(NY, 2026, 1, 29, 13)
    assert c.working_time(BusinessDuration(1, "w")) == 5 * c.day_length


def test_a_deadline_may_land_exactly_at_closing_time() -> None:
    c = cal("us-east")
    assert c.add(at(NY, 2026, 1, 13, 9), h(8)) == at(NY, 2026, 1, 13, 17)
    assert c.add(at(NY, 2026, 1, 13, 16), h(1)) == at(NY, 2026, 1, 13, 17)
    assert not c.is_working(at(NY, 2026, 1, 13, 17))
    assert c.add(at(NY, 2026, 1, 13, 17), h(1)) == at(NY, 2026, 1, 14, 10)


def test_a_lunch_break_is_not_working_time() -> None:
    c = cal("lunch")
    assert c.add(at(NY, 2026, 1, 13, 11), h(2)) == at(NY, 2026, 1, 13, 14)
    assert c.add(at(NY, 2026, 1, 13, 11), h(1)) == at(NY, 2026, 1, 13, 12)
    assert not c.is_working(at(NY, 2026, 1, 13, 12, 30))
    assert c.next_working(at(NY, 2026, 1, 13, 12, 30)) == at(NY, 2026, 1, 13, 13)
    assert c.between(at(NY, 2026, 1, 13, 11), at(NY, 2026, 1, 13, 14)) == timedelta(hours=2)
    assert c.end_of_day(date(2026, 1, 13)) == at(NY, 2026, 1, 13, 17)


def test_end_of_day_on_a_working_day_a_weekend_and_holidays() -> None:
    c = cal("us-east")
    assert c.end_of_day(date(2026, 11, 25)) == datetime(2026, 11, 25, 22, tzinfo=UTC)
    assert c.end_of_day(date(2026, 11, 28)) == at(NY, 2026, 11, 30, 17)  # Saturday
    assert c.end_of_day(date(2026, 11, 26)) == at(NY, 2026, 11, 27, 17)  # Thanksgiving
    office = cal("office")  # 2026-12-24 is a listed date
    assert office.end_of_day(date(2026, 12, 24)) == at(AMS, 2026, 12, 25, 17)


def test_between_counts_only_working_time_and_is_zero_backwards() -> None:
    c = cal("us-east")
    friday, monday = at(NY, 2026, 1, 9, 16), at(NY, 2026, 1, 12, 10)
    assert c.between(friday, monday) == timedelta(hours=2)
    assert c.between(monday, friday) == timedelta(0)
    assert c.between(monday, monday) == timedelta(0)


def test_always_is_plain_elapsed_time_even_across_dst() -> None:
    c = BusinessCalendar.always("America/New_York")
    fall = datetime(2026, 11, 1, 5, tzinfo=UTC)  # 01:00 EDT, an hour before the change
    assert c.add(fall, h(2)) == fall + timedelta(hours=2)
    spring = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert c.add(spring, h(2)) == spring + timedelta(hours=2)
    assert c.add(spring, BusinessDuration(1, "d")) == spring + timedelta(hours=24)
    assert c.between(fall, fall + timedelta(hours=30)) == timedelta(hours=30)
    assert c.is_working(fall) and c.next_working(fall) == fall
    assert c.end_of_day(date(2026, 11, 1)) == datetime(2026, 11, 2, 5, tzinfo=UTC)


def test_calendars_are_built_once() -> None:
    assert cal("us-east") is cal("us-east")
    assert BusinessCalendar.always("UTC") is BusinessCalendar.always("UTC")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cal("us-east").add(datetime(2026, 1, 12, 9), h(1))


def test_a_calendar_without_working_time_raises_instead_of_looping() -> None:
    mondays = [date(2026, 1, 5) + timedelta(weeks=i) for i in range(4 * 53)]
    text = f"""
[calendars.never]
timezone = "UTC"
hours = "Mon 09:00-17:00"
holidays = [{", ".join(f'"{d}"' for d in mondays)}]
"""
    never = BusinessCalendar.from_config(parse_config(text).calendars["never"])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"'never'.*3 years"):
        never.add(start, h(1))
    with pytest.raises(ValueError, match="3 years"):
        never.next_working(start)
    with pytest.raises(ValueError, match="3 years"):
        never.end_of_day(start.date())
    assert never.between(start, start + timedelta(days=400)) == timedelta(0)


def test_a_calendar_with_no_hours_is_refused() -> None:
    empty = Calendar(name="empty", timezone="UTC", hours=())
    with pytest.raises(ValueError, match="no working hours"):
        BusinessCalendar.from_config(empty)


# --- properties ---------------------------------------------------------------------------------

YEAR_2026 = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31, 23, 59, 59)
).map(lambda t: t.replace(tzinfo=UTC))
UP_TO_3_WEEKS = st.timedeltas(min_value=timedelta(0), max_value=timedelta(weeks=3))
NAMES = st.sampled_from(["us-east", "office", "tokyo", "lunch", "us-east-7d"])


@settings(deadline=None, max_examples=300)
@given(NAMES, YEAR_2026, UP_TO_3_WEEKS)
def test_between_is_the_inverse_of_add_td(name: str, t: datetime, amount: timedelta) -> None:
    c = cal(name)
    start = c.next_working(t)
    assert c.between(start, c.add_td(start, amount)) == amount
    assert c.between(t, c.add_td(t, amount)) == amount  # a non-working start changes nothing


@settings(deadline=None, max_examples=300)
@given(NAMES, YEAR_2026, st.integers(1, 60), st.integers(1, 60), st.sampled_from("mhdw"))
def test_add_is_monotonic_in_the_duration(
    name: str, t: datetime, a: int, b: int, unit: str
) -> None:
    c = cal(name)
    small, large = sorted((a, b))
    assert c.add(t, BusinessDuration(small, unit)) <= c.add(t, BusinessDuration(large, unit))
    assert c.add(t, BusinessDuration(small, unit)) >= c.next_working(t)
