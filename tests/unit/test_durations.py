"""Unit tests for mailwatch.durations: parsing, formatting and business-day deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.durations import Duration, format_seconds, parse_duration

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
