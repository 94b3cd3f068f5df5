"""Human durations (``45m``, ``2h10m``, ``1 business day``): parsing, formatting, deadlines.

Pure functions. Every :class:`Duration` is bounded: finite, not negative, at most
:data:`MAX_SECONDS` of clock time or :data:`MAX_BUSINESS_DAYS` business days; anything else
raises :class:`~mailwatch.errors.InvalidDuration` (a ``ValueError``). Business days are counted
on a :class:`BusinessCalendar` (a time zone, and the dates that are not working days besides
Saturdays and Sundays) passed in as a value; without one, Saturdays and Sundays in UTC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from mailwatch.errors import InvalidDuration

MAX_SECONDS = 3660 * 86400.0
"""The longest clock duration mailwatch accepts anywhere (about ten years)."""
MAX_BUSINESS_DAYS = 2610
"""The most business days mailwatch accepts anywhere (about ten years)."""

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNIT_WORDS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "week": "w", "weeks": "w",
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_BUSINESS = re.compile(r"^\s*(\d+)\s*(?:bd|business[ _-]?days?)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Which days are working days, and where: weekdays in ``zone`` that are not ``holidays``."""

    zone: tzinfo = UTC
    holidays: frozenset[date] = frozenset()

    def is_business_day(self, day: date) -> bool:
        """Whether ``day`` (a local date in ``zone``) is a working day."""
        return day.weekday() < 5 and day not in self.holidays


WEEKDAYS_UTC = BusinessCalendar()
"""Saturdays and Sundays off, no holidays, dates in UTC: the calendar of a bare Duration."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A span of time, either clock time (``seconds``) or whole ``business_days``.

    ``calendar`` says how business days are counted (it is not part of equality).
    """

    seconds: float = 0.0
    business_days: int = 0
    calendar: BusinessCalendar | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and 0 <= self.seconds <= MAX_SECONDS):
            raise InvalidDuration(
                f"{self.seconds!r} seconds is out of range (0 to {format_seconds(MAX_SECONDS)})"
            )
        if not 0 <= self.business_days <= MAX_BUSINESS_DAYS:
            raise InvalidDuration(
                f"{self.business_days} business days is out of range (0 to {MAX_BUSINESS_DAYS})"
            )

    def on(self, calendar: BusinessCalendar) -> Duration:
        """This duration with business days counted on ``calendar``."""
        return Duration(self.seconds, self.business_days, calendar)

    def deadline_after(self, start: datetime) -> datetime:
        """The instant this duration after ``start`` ends (business days on the calendar).

        A business-day deadline is the same wall-clock time in the calendar's zone, that many
        working days later; a start on a non-working day counts from 00:00 of the next working
        day. A deadline past ``datetime.max`` is ``datetime.max``.
        """
        try:
            if not self.business_days:
                return start + timedelta(seconds=self.seconds)
            return _business_deadline(start, self.business_days, self.calendar or WEEKDAYS_UTC)
        except OverflowError:
            return datetime.max.replace(tzinfo=start.tzinfo)

    def __str__(self) -> str:
        if self.business_days:
            unit = "business day" if self.business_days == 1 else "business days"
            return f"{self.business_days} {unit}"
        return format_seconds(self.seconds)


def _business_deadline(start: datetime, days: int, calendar: BusinessCalendar) -> datetime:
    local = start.astimezone(calendar.zone)
    day, clock = local.date(), local.time()
    if not calendar.is_business_day(day):  # the clock starts at the next working day's 00:00
        while not calendar.is_business_day(day):
            day += timedelta(days=1)
        clock = time(0)
    return _count(day, clock, days, calendar).astimezone(start.tzinfo)


def _count(day: date, clock: time, days: int, calendar: BusinessCalendar) -> datetime:
    remaining = days
    while remaining:
        day += timedelta(days=1)
        if calendar.is_business_day(day):
            remaining -= 1
    return datetime.combine(day, clock, tzinfo=calendar.zone)


def parse_duration(text: str) -> Duration:
    """Parse ``"10m"``, ``"2h10m"``, ``"90 seconds"``, ``"1 business day"``, ``"1bd"``.

    Raises :class:`~mailwatch.errors.InvalidDuration` (a ``ValueError``) naming the text when
    it is not a duration or is longer than mailwatch accepts.
    """
    business = _BUSINESS.match(text)
    if business:
        digits = business.group(1).lstrip("0") or "0"
        if len(digits) > len(str(MAX_BUSINESS_DAYS)) or int(digits) > MAX_BUSINESS_DAYS:
            raise InvalidDuration(f"{text!r} is too long (at most {MAX_BUSINESS_DAYS}bd)")
        return Duration(business_days=int(digits))
    cleaned = text.strip().lower()
    if not cleaned:
        raise InvalidDuration(f"{text!r} is not a duration")
    total = 0.0
    pos = 0
    while pos < len(cleaned):
        part = _PART.match(cleaned, pos)
        if not part or part.group(2) not in _UNIT_WORDS:
            raise InvalidDuration(f"{text!r} is not a duration (use e.g. 45s, 10m, 2h10m, 1d, 1bd)")
        total += float(part.group(1)) * _UNIT_SECONDS[_UNIT_WORDS[part.group(2)]]
        pos = part.end()
    if not total <= MAX_SECONDS:  # also catches inf (a number too long for a float)
        raise InvalidDuration(f"{text!r} is too long (at most {format_seconds(MAX_SECONDS)})")
    return Duration(seconds=total)


def format_seconds(seconds: float) -> str:
    """Format a span for people: ``45s``, ``12m``, ``2h10m``, ``3d4h``; ``never`` for inf."""
    if math.isinf(seconds) or math.isnan(seconds):
        return "never"
    negative = seconds < 0
    remaining = int(abs(seconds))
    days, remaining = divmod(remaining, 86400)
    hours, remaining = divmod(remaining, 3600)
    minutes, secs = divmod(remaining, 60)
    if days:
        text = f"{days}d{hours}h" if hours else f"{days}d"
    elif hours:
        text = f"{hours}h{minutes}m" if minutes else f"{hours}h"
    elif minutes:
        text = f"{minutes}m"
    else:
        text = f"{secs}s"
    return f"-{text}" if negative else text


def duration_of(value: object) -> Duration:
    """A configuration value (``"10m"``, seconds as a number, a :class:`Duration`) as a duration.

    Raises ``ValueError`` naming the bad value; both the full configuration model
    (:mod:`mailwatch.config.fields`) and the read commands' light path
    (:mod:`mailwatch.config.essentials`) use it, so their messages cannot drift apart.
    """
    if isinstance(value, Duration):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a duration (finite seconds, not negative)")
        try:
            return Duration(seconds=float(value))
        except InvalidDuration as exc:
            raise ValueError(str(exc)) from None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    try:
        return parse_duration(value)
    except InvalidDuration as exc:
        if "too long" in str(exc):
            raise ValueError(str(exc)) from None
        raise ValueError(f'"{value}" is not a duration (e.g. 45s, 10m, 2h10m, 1bd)') from None
