"""The "static" kind's adapter and builder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mailwatch.core.model import QueueObservation
from mailwatch.sources import BuildContext
from static_kind.parser import StaticSourceConfig, parse_listing


class StaticSource:
    """Reports the same listing on every probe."""

    def __init__(self, name: str, listing: str, clock: Callable[[], datetime]) -> None:
        self._name = name
        self.listing = listing
        self.clock = clock

    @property
    def name(self) -> str:
        """Its name in the configuration."""
        return self._name

    async def probe(self) -> QueueObservation:
        """The listing, parsed."""
        messages, malformed = parse_listing(self._name, self.listing)
        return QueueObservation(
            source=self._name, observed_at=self.clock(), messages=tuple(messages),
            malformed=malformed, headers_read=len(messages),
        )  # fmt: skip


def build_static(name: str, config: StaticSourceConfig, context: BuildContext) -> StaticSource:
    """A static source for one ``[sources.NAME]`` table."""
    return StaticSource(name, config.listing, context.clock)
