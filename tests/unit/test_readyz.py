"""``/readyz`` says why it is not ready: sources not yet probed, the store failing and how.

The real application (``api.build``) on aiohttp's test server, over a real store. The sources
are ``EmptyQueueFakeSource`` fakes (a probe that sees an empty queue; readiness depends on
whether a probe happened, not on what it saw), and the read-only store is a fault-injection
fake (``PRAGMA query_only``: every write fails with SQLITE_READONLY, as on a read-only mount).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mailwatch.app.service import Service
from mailwatch.config.settings import load
from mailwatch.core.model import QueueObservation
from mailwatch.store import Store
from mailwatch.web import api


class EmptyQueueFakeSource:
    """Fake: a source whose probe always sees an empty queue."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def probe(self) -> QueueObservation:
        """An empty queue, now."""
        return QueueObservation(self.name, datetime.now(UTC), ())


@pytest.fixture(name="service")
def fixture_service(tmp_path: Path) -> Service:
    """A service with two (fake) sources, none probed yet."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        '[store]\npath = "mw.db"\n'
        '[sources.mta1]\ntype = "postfix"\n[sources.mta2]\ntype = "postfix"\n',
        encoding="utf-8",
    )
    settings = load(config)
    store = Store(settings.store.path)
    return Service(settings, store, [EmptyQueueFakeSource("mta1"), EmptyQueueFakeSource("mta2")])


@pytest.fixture(name="client")
async def fixture_client(service: Service) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the whole HTTP application (``/readyz`` needs no token)."""
    async with TestClient(TestServer(api.build(service, service.settings))) as client:
        yield client
    service.store.close()


async def readyz(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    """GET /readyz: (status, JSON body)."""
    response = await client.get("/readyz")
    return response.status, await response.json()


class TestReadyzSaysWhy:
    """Not ready: 503 with reasons; ready: 200 ``{"ready": true}``."""

    async def test_sources_not_yet_probed_are_named(
        self, client: TestClient[Any, Any], service: Service
    ) -> None:
        """Before any probe both are named; after mta1's, only mta2; after both, ready."""
        assert await readyz(client) == (503, {
            "ready": False,
            "reasons": ["sources not yet probed: mta1, mta2"],
            "not_probed": ["mta1", "mta2"],
            "store": {"up": True, "kind": None, "failing_since": None},
        })  # fmt: skip
        await service.probe_once(service.sources[0])
        status, body = await readyz(client)
        assert (status, body["not_probed"]) == (503, ["mta2"])
        await service.probe_once(service.sources[1])
        assert await readyz(client) == (200, {"ready": True})

    async def test_store_failure_gives_its_kind_not_its_text(
        self, client: TestClient[Any, Any], service: Service
    ) -> None:
        """A read-only store: 503, kind read_only and since when; writable again: ready."""
        for source in service.sources:
            await service.probe_once(source)
        service.store._db.execute("PRAGMA query_only=ON")  # the fake: a read-only store
        await service.probe_once(service.sources[0])  # its scan cannot be written

        status, body = await readyz(client)

        assert status == 503
        assert body["not_probed"] == []
        assert body["store"]["up"] is False
        assert body["store"]["kind"] == "read_only"
        assert datetime.fromisoformat(body["store"]["failing_since"]) <= datetime.now(UTC)
        assert body["reasons"] == [
            f"store failing (read_only) since {body['store']['failing_since']}"
        ]
        assert "readonly database" not in str(body)  # the error's text stays in the log
        service.store._db.execute("PRAGMA query_only=OFF")
        await service.probe_once(service.sources[0])
        assert await readyz(client) == (200, {"ready": True})
