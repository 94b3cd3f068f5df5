"""Field types shared by every configuration model: durations, priorities, regexes.

Each turns the text a person writes (``"10m"``, ``"P1"``, a pattern) into a typed value or
raises ``ValueError`` with a message that names the bad value, which pydantic reports under
the key path.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

from mailwatch.durations import Duration, parse_duration
from mailwatch.model import Priority


def _duration(value: object) -> Duration:
    if isinstance(value, Duration):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Duration(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f'"{value}" is not a duration (e.g. 45s, 10m, 2h10m, 1bd)') from None


def _priority(value: object) -> Priority:
    if isinstance(value, Priority):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a priority (P1, P2, P3 or P4)")
    return Priority.parse(value)


def _regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a regular expression")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None


DurationField = Annotated[Duration, BeforeValidator(_duration)]
PriorityField = Annotated[Priority, BeforeValidator(_priority)]
RegexField = Annotated[re.Pattern[str], BeforeValidator(_regex)]
