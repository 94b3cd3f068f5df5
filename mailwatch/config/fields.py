"""Field types shared by every configuration model: durations, priorities, regexes, secrets.

Each turns the text a person writes (``"10m"``, ``"P1"``, a pattern) into a typed value or
raises ``ValueError`` with a message that names the bad value, which pydantic reports under
the key path.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from mailwatch.core.classify import SafePattern, compile_pattern
from mailwatch.core.durations import Duration, duration_of, format_seconds
from mailwatch.core.model import Priority

_duration = duration_of


def _between(
    least: float, most: float, *, business_days: int = 0
) -> Callable[[Duration], Duration]:
    """A check: clock time in [least, most] seconds, or up to ``business_days`` of those."""

    def check(value: Duration) -> Duration:
        if value.business_days:
            if not business_days:
                raise ValueError(f"{value}: use clock time here (e.g. 30s, 10m), not business days")
            if value.business_days > business_days:
                raise ValueError(f"{value} is too long (at most {business_days} business days)")
            return value
        if value.seconds < least:
            raise ValueError(f"{value} is too short (at least {format_seconds(least)})")
        if value.seconds > most:
            raise ValueError(f"{value} is too long (at most {format_seconds(most)})")
        return value

    return check


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
"""Any duration mailwatch accepts: finite, not negative, at most about ten years."""
SlaField = Annotated[Duration, BeforeValidator(_duration),
                     AfterValidator(_between(0, 366 * 86400, business_days=260))]  # fmt: skip
"""An SLA: at most 366 days (or 260 business days); 0 means stuck at once."""
IntervalField = Annotated[Duration, BeforeValidator(_duration),
                          AfterValidator(_between(1, 86400))]  # fmt: skip
"""How often something runs: clock time, 1s to 1d."""
TimeoutField = Annotated[Duration, BeforeValidator(_duration),
                         AfterValidator(_between(1, 86400))]  # fmt: skip
"""How long to wait: clock time, 1s to 1d."""
SpanField = Annotated[Duration, BeforeValidator(_duration),
                      AfterValidator(_between(1, 366 * 86400))]  # fmt: skip
"""A positive span of clock time, 1s to 366 days."""
WindowField = Annotated[Duration, BeforeValidator(_duration),
                        AfterValidator(_between(0, 366 * 86400))]  # fmt: skip
"""A lag or window of clock time (0 allowed), at most 366 days."""
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

    def problem(self) -> tuple[Literal["error", "warning"], str] | None:
        """What is wrong with this secret here and now, if anything (never its value).

        Errors: an empty secret, a file that does not exist. Warnings: an unset environment
        variable or an unreadable file (the service may run with another environment or
        user), a file that anyone on the host may read.
        """
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                return "warning", f"environment variable {self.env} is not set here"
            if not value.strip():
                return "error", f"environment variable {self.env} is empty"
            return None
        assert self.file is not None  # noqa: S101 - guaranteed by the validator
        try:
            mode = self.file.stat().st_mode
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "error", f"secret file {self.file} does not exist"
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            return "warning", f"cannot read secret file {self.file} here: {reason}"
        if not text.strip():
            return "error", f"secret file {self.file} is empty"
        if mode & stat.S_IROTH:
            return "warning", f"secret file {self.file} is readable by everyone (chmod o-r)"
        return None

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
