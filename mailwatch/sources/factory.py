"""Build the configured sources: each table by the builder its kind registered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from mailwatch.config.settings import Settings
from mailwatch.sources import BuildContext, Source
from mailwatch.sources.registry import kind_of
from mailwatch.store import Store


def build_sources(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Source]:
    """One adapter per configured source, resumed from what the store remembers.

    Each is built by its kind's builder (:mod:`mailwatch.sources.registry`); see
    :mod:`mailwatch.sources.builders` for how the built-in kinds resume.
    """
    context = BuildContext(settings=settings, store=store, clock=clock)
    return [
        kind_of(config).build(name, config, context) for name, config in settings.sources.items()
    ]
