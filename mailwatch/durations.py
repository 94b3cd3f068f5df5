"""Human durations (``45m``, ``2h10m``, ``1 business day``): parsing, formatting, deadlines.

Pure functions. A business day skips Saturdays and Sundays; public holidays are not known to
mailwatch (an operator who needs them should express the SLA in hours instead).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

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
class Duration:
    """A span of time, either clock time (``seconds``) or whole ``business_days``."""

    seconds: float = 0.0
    business_days: int = 0

    def deadline_after(self, start: datetime) -> datetime:
        """The instant this duration after ``start`` ends (weekends skipped for business days)."""
        if not self.business_days:
            return start + timedelta(seconds=self.seconds)
        moment = start
        if moment.weekday() >= 5:  # starts on a weekend: the clock starts Monday 00:00
            moment = (moment + timedelta(days=7 - moment.weekday())).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
        remaining = self.business_days
        while remaining:
            moment += timedelta(days=1)
            if moment.weekday() < 5:
                remaining -= 1
        return moment

    def __str__(self) -> str:
        if self.business_days:
            unit = "business day" if self.business_days == 1 else "business days"
            return f"{self.business_days} {unit}"
        return format_seconds(self.seconds)


def parse_duration(text: str) -> Duration:
    """Parse ``"10m"``, ``"2h10m"``, ``"90 seconds"``, ``"1 business day"``, ``"1bd"``.

    Raises ``ValueError`` naming the text when it is not a duration.
    """
    business = _BUSINESS.match(text)
    if business:
        return Duration(business_days=int(business.group(1)))
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError(f"{text!r} is not a duration")
    total = 0.0
    pos = 0
    while pos < len(cleaned):
        part = _PART.match(cleaned, pos)
        if not part or part.group(2) not in _UNIT_WORDS:
            raise ValueError(f"{text!r} is not a duration (use e.g. 45s, 10m, 2h10m, 1d, 1bd)")
        total += float(part.group(1)) * _UNIT_SECONDS[_UNIT_WORDS[part.group(2)]]
        pos = part.end()
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
