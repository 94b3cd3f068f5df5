"""Sources: adapters that look at where mail waits and report what they saw.

Every source implements the one-method :class:`Source` protocol. A probe either returns an
:class:`~mailwatch.core.model.Observation` or raises a :class:`~mailwatch.errors.SourceError`; it
never returns half an answer silently.

A source that hands out progress (a log cursor, canary events) implements
:class:`KeepsProgress` too: it keeps what it handed out until the scanner says the store has
committed it, so a failed store write (full disk, read-only) loses nothing: the next
observation carries it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # (annotations only: a helper process imports its module without these)
    from mailwatch.config.settings import Settings
    from mailwatch.core.model import Observation
    from mailwatch.store import Store


class Source(Protocol):
    """Something mailwatch can probe for the messages waiting in it."""

    @property
    def name(self) -> str:
        """Unique name of this source in the configuration (used in keys and labels)."""
        ...

    async def probe(self) -> Observation:
        """Look once; raise :class:`~mailwatch.errors.SourceError` on failure."""
        ...


@runtime_checkable
class KeepsProgress(Protocol):
    """A source whose observations carry progress that must reach the store exactly once."""

    def committed(self, observation: Observation) -> None:
        """The store has committed ``observation``'s outcomes or canaries: move on past them.

        Until this is called, the next probe hands the same progress out again (a log read
        again from the old cursor, canary events reported again); the store applies each
        once, so nothing is lost or counted twice.
        """
        ...


@dataclass(frozen=True)
class BuildContext:
    """What a source kind's builder may use besides its own configuration table."""

    settings: Settings
    store: Store
    """Where a source resumes from (header caches, log cursors, canaries in flight)."""
    clock: Callable[[], datetime]
