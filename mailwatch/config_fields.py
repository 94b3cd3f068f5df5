"""Field types shared by every configuration model: durations, priorities, regexes, secrets.

Each turns the text a person writes (``"10m"``, ``"P1"``, a pattern) into a typed value or
raises ``ValueError`` with a message that names the bad value, which pydantic reports under
the key path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from mailwatch.classify import SafePattern, compile_pattern
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


def _regex(value: object) -> SafePattern:
    if isinstance(value, SafePattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a regular expression")
    try:
        re.compile(value, re.IGNORECASE)  # first Python's own error, as before
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return compile_pattern(value)  # RE2 (linear time): ValueError for what it cannot run


DurationField = Annotated[Duration, BeforeValidator(_duration)]
PriorityField = Annotated[Priority, BeforeValidator(_priority)]
RegexField = Annotated[SafePattern, BeforeValidator(_regex)]


class SecretRef(BaseModel):
    """Where a secret is: an environment variable or a file (first line, stripped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def read(self) -> str:
        """The secret's value; raises ``LookupError`` naming where it looked (not the value)."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise LookupError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None  # noqa: S101 - guaranteed by the validator
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LookupError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
