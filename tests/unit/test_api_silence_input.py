"""The API answers a bad silence with 400 and a JSON error, never 500 (issue 11 item 12).

The real application (``api.build``) on aiohttp's test server, over a real store; no sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mailwatch.app.service import Service
from mailwatch.config.settings import load
from mailwatch.store import Store
from mailwatch.web import api

WRITE = "write-token-for-tests"


@pytest.fixture(name="client")
async def fixture_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the whole HTTP application with a write token."""
    monkeypatch.setenv("MW_TEST_WRITE", WRITE)
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        '[store]\npath = "mw.db"\n[[http.tokens]]\nname = "on-call"\nscope = "write"\n'
        'secret = { env = "MW_TEST_WRITE" }\n',
        encoding="utf-8",
    )
    settings = load(config)
    with Store(settings.store.path) as store:
        app = api.build(Service(settings, store, []), settings)
        async with TestClient(TestServer(app)) as client:
            yield client


async def post_silence(client: TestClient[Any, Any], body: Any) -> tuple[int, Any]:
    """POST /api/v1/silences with the write token; (status, JSON body)."""
    response = await client.post(
        "/api/v1/silences", json=body, headers={"Authorization": f"Bearer {WRITE}"}
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("duration", "needle"),
    [
        ("99999999999d", "too long"),
        ("9" * 400 + "s", "too long"),
        ("91d", "out of range"),
        ("0s", "out of range"),
        ("2bd", "not business days"),
        ("soon", "is not a duration"),
        (3600, "give a duration as a string"),
        (None, "give a duration as a string"),
    ],
)
async def test_bad_duration_is_400(
    client: TestClient[Any, Any], duration: object, needle: str
) -> None:
    """Every bad ``for`` is a 400 whose JSON error starts with the field name."""
    body = {"class": "general", "for": duration, "reason": "maintenance"}
    status, reply = await post_silence(client, body)
    assert status == 400
    assert reply["error"].startswith("for: ")
    assert needle in reply["error"]


async def test_good_duration_is_created(client: TestClient[Any, Any]) -> None:
    """A sensible silence still works."""
    body = {"class": "general", "for": "2h", "reason": "maintenance"}
    status, reply = await post_silence(client, body)
    assert status == 201
    assert reply["id"] >= 1
