"""Sources: adapters that look at where mail waits and report what they saw.

Every source implements the one-method :class:`Source` protocol. A probe either returns an
:class:`~mailwatch.core.model.Observation` or raises a :class:`~mailwatch.errors.SourceError`; it
never returns half an answer silently.
"""

from __future__ import annotations

from typing import Protocol

from mailwatch.core.model import Observation


class Source(Protocol):
    """Something mailwatch can probe for the messages waiting in it."""

    @property
    def name(self) -> str:
        """Unique name of this source in the configuration (used in keys and labels)."""
        ...

    async def probe(self) -> Observation:
        """Look once; raise :class:`~mailwatch.errors.SourceError` on failure."""
        ...
