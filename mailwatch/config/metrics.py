"""The ``[metrics]`` section: which destinations get a label (and a watch) of their own.

Metric labels stay bounded: a reason category is one of a fixed set, and a destination is one
of ``partner_domains`` (plus, for the deferral watch, the ``top_destinations`` busiest at the
moment) or ``other``. A fleet's series count is known from the configuration.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailwatch.config.fields import SpanField
from mailwatch.core.durations import Duration


class MetricsConfig(BaseModel):
    """Breakdowns by destination, and the window deferral shares are measured over."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    partner_domains: list[str] = Field(default_factory=list, max_length=100)
    """Recipient domains that get their own ``destination`` label; all others are ``other``."""
    top_destinations: Annotated[int, Field(ge=0, le=20)] = 5
    """How many more destinations (the most deferred right now) the deferral watch follows."""
    deferral_window: SpanField = Duration(seconds=900)
    """Deferral shares per destination are averaged over the scans of this window."""
    drain_halflife: SpanField = Duration(seconds=600)
    """The drain rate is fitted over 3 of these (``mailwatch_backlog_drain_rate``, the ETA)."""

    @field_validator("partner_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        domains = [d.strip().lower().rstrip(".") for d in value]
        for domain in domains:
            if not domain or any(c.isspace() or c in "@\"'{}," for c in domain):
                raise ValueError(f"{domain!r} is not a domain name")
            if domain == "other":
                raise ValueError("'other' is the label of every other domain, not a domain")
        return list(dict.fromkeys(domains))
