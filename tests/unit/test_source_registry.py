"""The source kind registry: a kind defined outside the package works with one registration.

The "static" kind (``tests/unit/static_kind/``: its config and parser, its source) is
registered with one call and then goes through everything a built-in kind goes through:
configuration, building, a scan by the service, the store and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from static_kind.parser import QUEUE, StaticSourceConfig
from static_kind.source import build_static

from mailwatch.app.service import Service
from mailwatch.config import settings as config
from mailwatch.config.kinds import source_types
from mailwatch.errors import ConfigError
from mailwatch.sources.factory import build_sources
from mailwatch.sources.registry import SourceKind, kinds, register, unregister
from mailwatch.store import Store
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BUILT_IN = ("postfix", "maillog", "exim", "imap", "canary")


@pytest.fixture
def static_kind() -> Iterator[None]:
    """The "static" kind registered for one test."""
    register(SourceKind(StaticSourceConfig, build_static))
    yield
    unregister("static")


def _write(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "mailwatch.toml"
    path.write_text(f'[store]\npath = "mw.db"\n{sources}', encoding="utf-8")
    return path


STATIC = """
[sources.shelf]
type = "static"
interval = "10s"
listing = '''
Q1|2026-11-30T08:00:00+00:00|Emergency recall: Part A
Q2|2026-11-30T08:59:00+00:00|Weekly newsletter
not a message
'''
"""


@pytest.mark.usefixtures("static_kind")
def test_a_kind_registered_outside_the_package_scans_stores_and_exports(tmp_path: Path) -> None:
    """Config with ``type = "static"`` → build → one service scan → store and metrics."""
    settings = config.load(_write(tmp_path, STATIC))
    assert isinstance(settings.sources["shelf"], StaticSourceConfig)
    with Store(settings.store.path) as store:
        sources = build_sources(settings, store, clock=lambda: NOW)
        assert [s.name for s in sources] == ["shelf"]
        service = Service(settings, store, sources, clock=lambda: NOW)
        outcome = asyncio.run(service.probe_once(sources[0]))
        assert outcome.ok, outcome.error
        assert outcome.observation is not None
        assert outcome.observation.malformed == 1
        stored = {m.queue_id: m for m in store.queued("shelf")}
        assert set(stored) == {"Q1", "Q2"}
        assert stored["Q1"].queue == QUEUE
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MailwatchCollector(lambda: service.snapshot))
        text = generate_latest(registry).decode()
    assert 'mailwatch_probe_up{source="shelf"} 1.0' in text
    waiting = [line for line in text.splitlines()
               if line.startswith("mailwatch_messages{") and 'source="shelf"' in line]  # fmt: skip
    assert sum(float(line.rsplit(" ", 1)[1]) for line in waiting) == 2
    assert all(f'queue="{QUEUE}"' in line for line in waiting)


def test_the_union_accepts_exactly_the_registered_types(tmp_path: Path) -> None:
    """Built-in types load; "static" does not until it is registered, and then it does."""
    assert source_types() == BUILT_IN
    assert tuple(kind.type for kind in kinds()) == BUILT_IN
    path = _write(tmp_path, STATIC)
    with pytest.raises(ConfigError) as refused:
        config.load(path)
    (problem,) = refused.value.problems
    assert problem.startswith("sources.shelf: ")
    found, expected = problem.split("expected tags:", 1)
    assert "'static'" in found
    assert expected.strip() == ", ".join(f"'{tag}'" for tag in BUILT_IN)
    register(SourceKind(StaticSourceConfig, build_static))
    try:
        assert source_types() == (*BUILT_IN, "static")
        assert config.load(path).sources["shelf"].type == "static"
    finally:
        unregister("static")
    assert source_types() == BUILT_IN


@pytest.mark.usefixtures("static_kind")
def test_errors_in_a_registered_kind_name_the_key(tmp_path: Path) -> None:
    """A registered kind's table is checked like a built-in's: unknown and missing keys."""
    path = _write(tmp_path, '[sources.shelf]\ntype = "static"\nlistin = ""\n')
    with pytest.raises(ConfigError) as refused:
        config.load(path)
    assert sorted(refused.value.problems) == [
        "sources.shelf.listin: unknown key",
        "sources.shelf.listing: required key is missing",
    ]


def test_a_type_cannot_be_registered_twice_with_another_model() -> None:
    """Registering a second kind under a built-in's tag is refused."""

    class Impostor(StaticSourceConfig):
        type: Literal["postfix"]  # type: ignore[assignment]

    with pytest.raises(ValueError, match="already registered"):
        register(SourceKind(Impostor, build_static))
    assert source_types() == BUILT_IN
