"""The ``[calendar]`` section: where business days are counted, and which days are holidays.

Business-day SLAs (``stuck_after = "1 business day"``) are counted in ``time_zone``
(Europe/London by default, so a weekend ends at midnight local time, not at 01:00 BST) and skip
Saturdays, Sundays and the bank holidays of ``country``/``subdivision`` (England and Wales by
default) as published by the maintained ``holidays`` package, plus any ``extra_holidays``,
less any ``working_days``. The result is a :class:`~mailwatch.core.durations.BusinessCalendar`
value handed to the pure core.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailwatch.core.durations import BusinessCalendar

YEARS_AROUND = 10
"""Bank holidays are listed for this many years either side of the current year."""
SUPPORTED = frozenset({("GB", None), ("GB", "ENG"), ("GB", "WLS"), ("GB", "SCT"), ("GB", "NIR")})
"""Country/subdivision pairs known to be supported (a test checks them against ``holidays``):
validating these needs no import of ``holidays``, whose import costs 70-130 ms (it loads every
country), so that commands that never build a calendar (``stuck``, ``check``) start faster."""


class CalendarConfig(BaseModel):
    """``[calendar]``: the time zone and holidays that business-day SLAs are counted on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str = "Europe/London"
    """An IANA time zone name; business days are local dates there."""
    country: str = "GB"
    """ISO 3166 country code for bank holidays (the ``holidays`` package); "" for none."""
    subdivision: str | None = "ENG"
    """The country's subdivision: ENG (England and Wales), WLS, SCT, NIR for GB."""
    extra_holidays: list[date] = Field(default_factory=list)
    """More days off (e.g. a local closure), as dates: ``2026-12-24``."""
    working_days: list[date] = Field(default_factory=list)
    """Listed holidays that are working days here after all."""

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (e.g. Europe/London)") from None
        return value

    @model_validator(mode="after")
    def _holidays_known(self) -> CalendarConfig:
        if self.country and (self.country, self.subdivision) not in SUPPORTED:
            try:
                _bank_holidays(self.country, self.subdivision, 2000, 2000)
            except NotImplementedError as exc:
                raise ValueError(f"country/subdivision: {exc}") from None
        return self

    def calendar(self, today: date | None = None) -> BusinessCalendar:
        """The calendar, with bank holidays for the years around ``today`` (default: now)."""
        year = (today or datetime.now(UTC).date()).year
        days: frozenset[date] = frozenset()
        if self.country:
            days = _bank_holidays(
                self.country, self.subdivision, year - YEARS_AROUND, year + YEARS_AROUND
            )
        holidays = (days | set(self.extra_holidays)) - set(self.working_days)
        return BusinessCalendar(ZoneInfo(self.time_zone), frozenset(holidays))


@functools.lru_cache(maxsize=8)
def _bank_holidays(country: str, subdivision: str | None, first: int, last: int) -> frozenset[date]:
    import holidays  # about 35 ms: only when a calendar is built

    found = holidays.country_holidays(country, subdiv=subdivision or None,
                                      years=range(first, last + 1))  # fmt: skip
    return frozenset(found)
