"""Pure rosters in Europe/Stockholm with Swedish public holidays."""

from __future__ import annotations

from datetime import UTC, datetime, time

from alerts.rosters import DayType, Shift, day_type, holiday_name, on_call

SHIFTS = [
    Shift("t", "day-nurse", "day@x", DayType.WEEKDAY, time(7), time(16)),
    Shift("t", "evening-nurse", "eve@x", DayType.WEEKDAY, time(16), time(22)),
    Shift("t", "night-nurse", "night@x", DayType.ANY, time(22), time(7)),
    Shift("t", "weekend-nurse", "we@x", DayType.WEEKEND, time(7), time(22)),
    Shift("t", "holiday-nurse", "hol@x", DayType.HOLIDAY, time(7), time(22)),
]


def who(utc: datetime) -> list[str]:
    return [s.user_id for s in on_call(SHIFTS, utc)]


def test_weekday_in_stockholm_time() -> None:
    # Tuesday 2026-03-10 06:30 UTC = 07:30 CET.
    assert who(datetime(2026, 3, 10, 6, 30, tzinfo=UTC)) == ["day-nurse"]
    # 05:30 UTC = 06:30 CET: the night shift that began Monday evening.
    assert who(datetime(2026, 3, 10, 5, 30, tzinfo=UTC)) == ["night-nurse"]
    # Summer time: 2026-06-09 (Tuesday) 05:30 UTC = 07:30 CEST.
    assert who(datetime(2026, 6, 9, 5, 30, tzinfo=UTC)) == ["day-nurse"]


def test_midsommarafton_and_juldagen_are_holidays() -> None:
    assert holiday_name(datetime(2026, 6, 19).date()) == "Midsommarafton"  # a Friday
    assert holiday_name(datetime(2026, 12, 25).date()) == "Juldagen"
    assert day_type(datetime(2026, 6, 19).date()) is DayType.HOLIDAY
    # Midsommarafton 2026-06-19 10:00 CEST (08:00 UTC), a Friday: the holiday roster, not the weekday one.
    assert who(datetime(2026, 6, 19, 8, 0, tzinfo=UTC)) == ["holiday-nurse"]
    assert who(datetime(2026, 12, 25, 12, 0, tzinfo=UTC)) == ["holiday-nurse"]
    assert who(datetime(2026, 6, 13, 12, 0, tzinfo=UTC)) == ["weekend-nurse"]  # an ordinary Saturday


def test_holiday_without_holiday_roster_uses_weekend_roster() -> None:
    shifts = [s for s in SHIFTS if s.day_type is not DayType.HOLIDAY]
    assert [s.user_id for s in on_call(shifts, datetime(2026, 12, 25, 12, 0, tzinfo=UTC))] == ["weekend-nurse"]
