"""``mailwatch run`` with ``[fleet]``: the service pushes off the scan path, and keeps going.

A real Postfix, a real PostgreSQL and the real HTTP API: the fleet endpoints answer what the
agent's own endpoints answer; with the database stopped the agent keeps scanning and serving
its own answer (the fleet endpoints say 503), and once it is back the fleet catches up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mailwatch.config.settings import Settings, load
from mailwatch.fleet import schema
from mailwatch.fleet.connect import connect
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sandbox.postgres import PrivatePostgres
from mailwatch.web.runner import run_service

from .service_config import service_toml
from .test_api import OPENAPI, READ, call

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


@pytest.fixture(name="settings")
def fixture_settings(
    tmp_path: Path, postfix: PrivatePostfix, fleet_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """An agent named edge1 scanning every second, pushing into a migrated fleet database."""
    monkeypatch.setenv("MW_TEST_READ", READ)
    config = tmp_path / "mailwatch.toml"
    config.write_text(service_toml(
        postfix, [("dashboard", "read", "MW_TEST_READ")],
        extra=f'[fleet]\nurl = "{fleet_url}"\nagent = "edge1"\ntimeout = "2s"\n',
    ))  # fmt: skip
    settings = load(config)
    assert settings.fleet is not None
    with connect(settings.fleet) as db:
        schema.migrate(db)
    return settings


@pytest.fixture(name="base")
async def fixture_base(settings: Settings, postfix: PrivatePostfix) -> AsyncIterator[str]:
    """The running service's base URL, with two recalls and a general message queued."""
    subjects = ["Emergency recall - A Person", "Emergency recall - B Person", "Team lunch"]
    postfix.inject([make_message(s) for s in subjects])
    postfix.wait_for_queue(3)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    base = f"http://{settings.http.listen}"
    await until(lambda: call(base, "GET", "/readyz")[0] == 200)
    yield base
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (in a thread) until it holds (30 s at most)."""
    for _ in range(150):
        try:
            if await asyncio.to_thread(condition):
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("condition never held")


def _ids(body: Any, prefix: str = "") -> set[tuple[str, str, str]]:
    return {(prefix + i["source"], i["id"], i["reason_category"]) for i in body["items"]}


async def test_the_fleet_answers_what_the_agent_answers_and_survives_a_partition(
    base: str, postfix: PrivatePostfix, postgres_instance: PrivatePostgres
) -> None:
    """Fleet endpoints equal the agent's; while the database is down the agent keeps going."""

    def same() -> bool:
        local = call(base, "GET", "/api/v1/messages", READ)[1]
        fleet = call(base, "GET", "/api/v1/fleet/messages", READ)[1]
        return len(local["items"]) == 2 and _ids(local, "edge1/") == _ids(fleet)

    await until(same)
    status, body = await asyncio.to_thread(call, base, "GET", "/api/v1/fleet/status", READ)
    assert status == 200
    spec = yaml.safe_load(OPENAPI.read_text())["components"]["schemas"]
    jsonschema.validate(body, json.loads(json.dumps(spec["FleetStatus"])))
    assert [(s["agent"], s["source"], s["state"], s["stuck"]) for s in body["sources"]] == [
        ("edge1", "mta1", "ok", 2)
    ]

    postgres_instance.stop()
    try:
        postfix.inject([make_message("Emergency recall - C Person")])
        await until(lambda: len(call(base, "GET", "/api/v1/messages", READ)[1]["items"]) == 3)
        assert (await asyncio.to_thread(call, base, "GET", "/readyz"))[0] == 200
        down = await asyncio.to_thread(call, base, "GET", "/api/v1/fleet/messages", READ)
        assert down[0] == 503
    finally:
        postgres_instance.start()

    def caught_up() -> bool:
        local = call(base, "GET", "/api/v1/messages", READ)[1]
        fleet = call(base, "GET", "/api/v1/fleet/messages", READ)[1]
        return len(local["items"]) == 3 and _ids(local, "edge1/") == _ids(fleet)

    await until(caught_up)  # the queued pushes replayed: the fleet has the third recall too
