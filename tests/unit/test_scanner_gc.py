"""Unit tests for the garbage-collection pause around scans (mailwatch.app.scanner)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.model import Observation
from mailwatch.errors import SourceUnavailable
from mailwatch.gcpause import collection_paused
from mailwatch.store import Store


class _Node:
    next: object = None


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    """Whatever a test does, the collector is enabled and nothing is frozen afterwards."""
    yield
    gc.unfreeze()
    gc.enable()


class TestCollectionPaused:
    """Automatic collection is off during a scan and back on after the last one."""

    def test_paused_then_resumed(self) -> None:
        """Disabled inside, enabled again after."""
        assert gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_overlapping_scans(self) -> None:
        """Collection resumes only when the last of several overlapping scans ends."""
        first, second = collection_paused(), collection_paused()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert not gc.isenabled()
        second.__exit__(None, None, None)
        assert gc.isenabled()

    def test_disabled_collector_stays_disabled(self) -> None:
        """A collector someone else disabled is not switched on."""
        gc.disable()
        with collection_paused():
            pass
        assert not gc.isenabled()

    def test_resumed_after_an_exception(self) -> None:
        """An exception inside still resumes collection."""
        with pytest.raises(RuntimeError), collection_paused():
            raise RuntimeError
        assert gc.isenabled()

    def test_survivors_go_straight_to_the_oldest_generation(self) -> None:
        """What a scan left is promoted, not traversed as young objects."""
        with collection_paused():
            survivor: list[object] = [object()]
        assert any(o is survivor for o in gc.get_objects(generation=2))
        assert not any(o is survivor for o in gc.get_objects(generation=0))

    def test_cyclic_garbage_is_still_collected(self) -> None:
        """A cycle made during a scan is found by the next full collection."""
        with collection_paused():
            node = _Node()
            node.next = node
            ref = weakref.ref(node)
            del node
        assert ref() is not None  # not collected by refcounting: it is a cycle
        gc.collect()
        assert ref() is None

    def test_frozen_objects_stay_frozen(self) -> None:
        """Objects frozen by someone else are not unfrozen by the promotion."""
        gc.freeze()
        try:
            frozen = gc.get_freeze_count()
            assert frozen > 1000
            with collection_paused():
                pass
            # Frozen objects can still be freed by reference counting meanwhile, so the count
            # may shrink a little; an unfreeze would take it to (almost) nothing.
            assert gc.get_freeze_count() >= frozen - 1000
        finally:
            gc.unfreeze()


class _BrokenSource:
    name = "broken"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def probe(self) -> Observation:
        raise self.error


class TestScannerPauses:
    """Scanner.scan pauses collection and always resumes it."""

    async def test_failed_probe(self, tmp_path: Path) -> None:
        """A probe that fails is recorded; collection is back on."""
        with Store(tmp_path / "db.sqlite") as store:
            scanner = Scanner(load(None).classifier(), store, clock=lambda: datetime.now(UTC))
            outcome = await scanner.scan(_BrokenSource(SourceUnavailable("broken", "down")))
        assert not outcome.ok
        assert gc.isenabled()

    async def test_unexpected_exception(self, tmp_path: Path) -> None:
        """An exception that is not a source error propagates; collection is back on."""
        with Store(tmp_path / "db.sqlite") as store:
            scanner = Scanner(load(None).classifier(), store)
            with pytest.raises(KeyError):
                await scanner.scan(_BrokenSource(KeyError("bug")))
        assert gc.isenabled()
