"""Unit tests for mailwatch.core.durations: parsing, formatting and business-day deadlines."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.durations import (
    MAX_BUSINESS_DAYS,
    MAX_SECONDS,
    BusinessCalendar,
    Duration,
    format_seconds,
    parse_duration,
)
from mailwatch.errors import InvalidDuration

# January 2026: Thu 1, Fri 2, Sat 3, Sun 4, Mon 5, Tue 6, Wed 7, Thu 8, Fri 9.
FRIDAY_5PM = datetime(2026, 1, 2, 17, 0, tzinfo=UTC)


def _at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant in January 2026, UTC."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


class TestParseDuration:
    """Human durations parse into clock seconds or whole business days."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("45s", Duration(seconds=45)),
            ("10m", Duration(seconds=600)),
            ("2h10m", Duration(seconds=7800)),
            ("2h 10m", Duration(seconds=7800)),
            (" 2h10m ", Duration(seconds=7800)),
            ("1d", Duration(seconds=86400)),
            ("1w", Duration(seconds=604800)),
            ("2 weeks", Duration(seconds=1209600)),
            ("90 seconds", Duration(seconds=90)),
            ("1 sec", Duration(seconds=1)),
            ("5 mins", Duration(seconds=300)),
            ("1 hour 30 minutes", Duration(seconds=5400)),
            ("3 hrs", Duration(seconds=10800)),
            ("1.5h", Duration(seconds=5400)),
            ("10M", Duration(seconds=600)),
            ("0s", Duration(seconds=0)),
            ("1 business day", Duration(business_days=1)),
            ("2 business days", Duration(business_days=2)),
            ("1 Business Day", Duration(business_days=1)),
            ("1business-day", Duration(business_days=1)),
            ("1 business_day", Duration(business_days=1)),
            ("1bd", Duration(business_days=1)),
            ("5 BD", Duration(business_days=5)),
        ],
    )
    def test_valid(self, text: str, expected: Duration) -> None:
        """Each form parses to the expected duration."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "10 minuts",
            "",
            "   ",
            "abc",
            "10",
            "m",
            "10m10",
            "-5m",
            "1.5bd",
            "1bd 2h",
            "1e3s",
            "1 day!",
        ],
    )
    def test_invalid_names_the_text(self, text: str) -> None:
        """Anything else raises ``ValueError`` quoting the text."""
        with pytest.raises(ValueError, match="is not a duration") as info:
            parse_duration(text)
        assert repr(text) in str(info.value)

    def test_business_days_are_not_clock_days(self) -> None:
        """``1bd`` is a business day, distinct from the 24-hour ``1d``."""
        assert parse_duration("1bd") != parse_duration("1d")


class TestFormatSeconds:
    """Spans format compactly, keeping the two most significant units."""

    @pytest.mark.parametrize(
        ("seconds", "expected"),
        [
            (0, "0s"),
            (45, "45s"),
            (59.9, "59s"),
            (60, "1m"),
            (90, "1m"),
            (720, "12m"),
            (3600, "1h"),
            (7800, "2h10m"),
            (86400, "1d"),
            (86400 + 3599, "1d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (-90, "-1m"),
            (-7800, "-2h10m"),
        ],
    )
    def test_format(self, seconds: float, expected: str) -> None:
        """Each span formats as expected."""
        assert format_seconds(seconds) == expected

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (Duration(seconds=600), "10m"),
            (Duration(seconds=7800), "2h10m"),
            (Duration(business_days=1), "1 business day"),
            (Duration(business_days=3), "3 business days"),
        ],
    )
    def test_str(self, duration: Duration, expected: str) -> None:
        """A duration prints the way configuration writes it."""
        assert str(duration) == expected


class TestDeadlineAfter:
    """Deadlines add clock time, or business days skipping weekends."""

    @pytest.mark.parametrize(
        ("duration", "start", "expected"),
        [
            (Duration(seconds=600), FRIDAY_5PM, _at(2, 17, 10)),
            (Duration(seconds=86400), FRIDAY_5PM, _at(3, 17)),  # clock days ignore weekends
            (Duration(seconds=0), FRIDAY_5PM, FRIDAY_5PM),
        ],
    )
    def test_clock_time(self, duration: Duration, start: datetime, expected: datetime) -> None:
        """Clock durations are plain additions, weekend or not."""
        assert duration.deadline_after(start) == expected

    @pytest.mark.parametrize(
        ("days", "start", "expected"),
        [
            (1, _at(5, 9, 30), _at(6, 9, 30)),  # Monday -> Tuesday
            (1, _at(1, 17), FRIDAY_5PM),  # Thursday -> Friday
            (1, FRIDAY_5PM, _at(5, 17)),  # Friday -> Monday
            (2, _at(1, 10), _at(5, 10)),  # Thursday + 2 -> Monday
            (5, _at(5, 9), _at(12, 9)),  # a working week
            (1, _at(3, 10), _at(6, 0)),  # Saturday: clock starts Monday 00:00
            (1, _at(4, 23, 59), _at(6, 0)),  # Sunday night: same
            (2, _at(3, 0), _at(7, 0)),
            (1, _at(5, 0), _at(6, 0)),  # Monday 00:00 itself
        ],
    )
    def test_business_days(self, days: int, start: datetime, expected: datetime) -> None:
        """Business days skip Saturday and Sunday; a weekend start waits for Monday."""
        deadline = Duration(business_days=days).deadline_after(start)
        assert deadline == expected
        assert deadline.weekday() < 5
        assert deadline.tzinfo is UTC

    def test_weekend_start_drops_seconds_and_microseconds(self) -> None:
        """The Monday 00:00 start is exact, whatever the time of the weekend arrival."""
        start = datetime(2026, 1, 3, 13, 14, 15, 161718, tzinfo=UTC)
        assert Duration(business_days=1).deadline_after(start) == _at(6)

    def test_business_day_deadline_never_earlier_than_clock_day(self) -> None:
        """Over a week of starts, one business day is never sooner than 24 hours."""
        for hours in range(0, 7 * 24, 5):
            start = FRIDAY_5PM + timedelta(hours=hours)
            assert Duration(business_days=1).deadline_after(start) >= start + timedelta(days=1)


class TestBounds:
    """Every duration is bounded; the parser never overflows (issue 11, items 10 and 11)."""

    @pytest.mark.parametrize(
        "text", ["99999999999d", "9" * 400 + "s", "9" * 5000 + "m", "3661d", "2611bd",
                 "99999999999999bd", "1" + "0" * 5000 + "bd"],
    )  # fmt: skip
    def test_enormous_is_a_typed_error(self, text: str) -> None:
        """Too long for mailwatch: InvalidDuration (a ValueError), not OverflowError."""
        with pytest.raises(InvalidDuration, match="too long"):
            parse_duration(text)

    def test_limits_themselves_parse(self) -> None:
        """The maxima are accepted, and usable as deadlines."""
        assert parse_duration("3660d").seconds == MAX_SECONDS
        assert parse_duration(f"{MAX_BUSINESS_DAYS}bd").business_days == MAX_BUSINESS_DAYS
        assert parse_duration("3660d").deadline_after(FRIDAY_5PM) > FRIDAY_5PM

    @pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0, MAX_SECONDS * 2])
    def test_constructor_refuses_unbounded(self, seconds: float) -> None:
        """A Duration cannot hold NaN, infinity, a negative or an enormous span."""
        with pytest.raises(InvalidDuration):
            Duration(seconds=seconds)

    def test_deadline_near_the_end_of_time_saturates(self) -> None:
        """A start near datetime.max gives datetime.max, not OverflowError."""
        start = datetime(9999, 12, 30, tzinfo=UTC)
        assert Duration(seconds=MAX_SECONDS).deadline_after(start).year == 9999
        assert Duration(business_days=5).deadline_after(start).year == 9999

    @settings(max_examples=400, deadline=None)
    @given(st.text())
    def test_any_text_is_bounded_or_typed_error(self, text: str) -> None:
        """Property: any text parses to a bounded duration or raises InvalidDuration."""
        _bounded_or_typed_error(text)

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.one_of(st.integers(min_value=0, max_value=10**30).map(str),
                          st.from_regex(r"\A[0-9]{1,400}(\.[0-9]{1,40})?\Z")),
                st.sampled_from(["s", "m", "h", "d", "w", "bd", "seconds", " business days"]),
            ),
            min_size=1, max_size=4,
        )
    )  # fmt: skip
    def test_duration_shaped_text(self, parts: list[tuple[str, str]]) -> None:
        """Property, on text that looks like durations (huge numbers included): same contract."""
        _bounded_or_typed_error("".join(number + unit for number, unit in parts))


def _bounded_or_typed_error(text: str) -> None:
    """The parser's contract: a bounded, usable duration, or InvalidDuration."""
    try:
        duration = parse_duration(text)
    except InvalidDuration:
        return
    assert math.isfinite(duration.seconds)
    assert 0 <= duration.seconds <= MAX_SECONDS
    assert 0 <= duration.business_days <= MAX_BUSINESS_DAYS
    assert duration.deadline_after(FRIDAY_5PM) >= FRIDAY_5PM


HOLIDAYS_2026 = frozenset({date(2026, 8, 31), date(2026, 12, 25), date(2026, 12, 28)})
LONDON = BusinessCalendar(ZoneInfo("Europe/London"), HOLIDAYS_2026)


class TestCalendar:
    """Business days in a time zone, with holidays (issue 11 item 9)."""

    def test_summer_weekend_ends_at_local_midnight(self) -> None:
        """Sunday 23:30 UTC is Monday 00:30 in London (BST): already a business day there."""
        start = datetime(2026, 7, 5, 23, 30, tzinfo=UTC)  # Mon 6 July 00:30 BST
        deadline = Duration(business_days=1).on(LONDON).deadline_after(start)
        assert deadline == datetime(2026, 7, 6, 23, 30, tzinfo=UTC)  # Tue 00:30 BST
        assert deadline.tzinfo is UTC

    def test_utc_calendar_got_this_wrong(self) -> None:
        """The old UTC count waited for Monday 00:00 UTC, then one more day: an hour late."""
        start = datetime(2026, 7, 5, 23, 30, tzinfo=UTC)
        assert Duration(business_days=1).deadline_after(start) == datetime(2026, 7, 7, tzinfo=UTC)

    def test_friday_evening_in_summer(self) -> None:
        """Friday 23:30 UTC is Saturday 00:30 BST: the clock starts Monday 00:00 BST."""
        start = datetime(2026, 7, 3, 23, 30, tzinfo=UTC)
        deadline = Duration(business_days=1).on(LONDON).deadline_after(start)
        assert deadline == datetime(2026, 7, 6, 23, 0, tzinfo=UTC)  # Tue 7 July 00:00 BST

    def test_bank_holiday_is_skipped(self) -> None:
        """Friday before the August bank holiday: due Tuesday, not Monday."""
        start = datetime(2026, 8, 28, 9, 0, tzinfo=ZoneInfo("Europe/London"))
        deadline = Duration(business_days=1).on(LONDON).deadline_after(start)
        assert deadline == datetime(2026, 9, 1, 9, 0, tzinfo=ZoneInfo("Europe/London"))

    def test_christmas(self) -> None:
        """Thursday 24 Dec + 2 business days: past Christmas and Boxing Day (observed)."""
        start = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
        deadline = Duration(business_days=2).on(LONDON).deadline_after(start)
        assert deadline == datetime(2026, 12, 30, 10, 0, tzinfo=UTC)

    def test_across_the_clock_change(self) -> None:
        """Friday 09:00 GMT + 1bd over the March change: Monday 09:00 local (now BST)."""
        london = ZoneInfo("Europe/London")
        start = datetime(2026, 3, 27, 9, 0, tzinfo=london)  # Friday, GMT; BST from Sunday
        deadline = Duration(business_days=1).on(LONDON).deadline_after(start)
        assert deadline == datetime(2026, 3, 30, 9, 0, tzinfo=london)
        assert deadline.utcoffset() == timedelta(hours=1)

    def test_calendar_is_not_part_of_equality(self) -> None:
        """``1bd`` is ``1bd`` whichever calendar counts it."""
        assert Duration(business_days=1).on(LONDON) == Duration(business_days=1)

    def test_configured_classes_count_on_the_configured_calendar(self) -> None:
        """The classifier built from config counts victim liaison days in London, holidays off."""
        from mailwatch.config import settings as config

        victim = next(c for c in config.load(None).classifier().all_classes
                      if c.name == "victim_liaison")  # fmt: skip
        start = datetime(2026, 8, 28, 9, 0, tzinfo=UTC)  # Friday before the bank holiday
        assert victim.stuck_after.deadline_after(start) == datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
