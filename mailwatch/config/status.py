"""The duty manager's status page: where its runbook links point (``[status]``).

Times on the page are shown in ``[calendar] time_zone`` (the business calendar's zone).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

DEFAULT_RUNBOOK_BASE_URL = "https://git.example.invalid/mailwatch/blob/main/docs/runbooks.md"


class StatusPageConfig(BaseModel):
    """``[status]``: the page's links and refresh."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    """Where docs/runbooks.md is published; each class links to ``<base>#<anchor>``."""
    refresh_seconds: int = 30
    """How often the page reloads itself (10 to 3600 seconds)."""

    @field_validator("runbook_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or any(c in value for c in "\"'<> "):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("refresh_seconds")
    @classmethod
    def _range(cls, value: int) -> int:
        if not 10 <= value <= 3600:
            raise ValueError("refresh_seconds: 10 to 3600")
        return value
