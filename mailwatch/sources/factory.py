"""Build the configured sources (the only place that maps configuration to adapters)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from mailwatch.config import PostfixSourceConfig, Settings
from mailwatch.headers import NormalisedSubject
from mailwatch.sources import Source
from mailwatch.sources.postfix import CachedHeaders, PostfixSource
from mailwatch.store import Store


def build_sources(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Source]:
    """One adapter per configured source; Postfix header caches are primed from the store.

    Priming means a restart does not re-read the headers of every message already queued.
    """
    sources: list[Source] = []
    for name, config in settings.sources.items():
        if isinstance(config, PostfixSourceConfig):
            cache = {
                m.key: CachedHeaders(m.headers, NormalisedSubject(m.subject, m.marking))
                for m in store.queued(name)
            }
            sources.append(
                PostfixSource(
                    name,
                    config_dir=config.config_dir,
                    postqueue=config.postqueue,
                    postconf=config.postconf,
                    timeout=config.timeout.seconds,
                    clock=clock,
                    header_cache=cache,
                )
            )
    return sources
