"""The HTTP API on a running service over the real Postfix: auth, filters, audit, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from openapi_spec_validator import validate as validate_spec

from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.store import Store
from mailwatch.web import api
from mailwatch.web.runner import run_service

from .service_config import service_toml

pytestmark = pytest.mark.postfix

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
READ, WRITE = "read-token-for-tests", "write-token-for-tests"


@pytest.fixture(name="settings")
def fixture_settings(
    tmp_path: Path, postfix: PrivatePostfix, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A service with a read and a write token; emergency recalls stuck after 0 s."""
    monkeypatch.setenv("MW_TEST_READ", READ)
    monkeypatch.setenv("MW_TEST_WRITE", WRITE)
    config = tmp_path / "mailwatch.toml"
    config.write_text(service_toml(postfix, [
        ("dashboard", "read", "MW_TEST_READ"), ("on-call", "write", "MW_TEST_WRITE"),
    ]))  # fmt: skip
    return load(config)


@pytest.fixture(name="base")
async def fixture_base(settings: Settings, postfix: PrivatePostfix) -> AsyncIterator[str]:
    """The running service's base URL, with two recalls and a general message scanned."""
    postfix.inject(
        [
            make_message("Emergency recall - A Person", to="ppcs@justice.example"),
            make_message("Emergency recall - B Person"),
            make_message("Team lunch"),
        ]
    )
    postfix.wait_for_queue(3)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    base = f"http://{settings.http.listen}"
    for _ in range(100):
        await asyncio.sleep(0.1)
        try:
            if (await asyncio.to_thread(call, base, "GET", "/readyz"))[0] == 200:
                break
        except OSError:
            continue
    yield base
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def call(base: str, method: str, path: str, token: str | None = None,
         body: dict[str, Any] | None = None) -> tuple[int, Any]:  # fmt: skip
    """One request; returns (status, decoded JSON or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw, status, kind = response.read(), response.status, response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers["Content-Type"]
    return status, json.loads(raw) if kind.startswith("application/json") else raw.decode()


class TestAuth:
    """Open paths, read and write scopes, constant-time token checks."""

    async def test_open_paths_and_tokens(self, base: str) -> None:
        """Health, metrics and the page are open; the API needs a token; writes need write."""
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            assert (await asyncio.to_thread(call, base, "GET", path))[0] == 200
        status, body = await asyncio.to_thread(call, base, "GET", "/api/v1/summary")
        assert (status, body["error"]) == (401, "a valid bearer token is required")
        assert (await asyncio.to_thread(call, base, "GET", "/api/v1/summary", "wrong"))[0] == 401
        assert (await asyncio.to_thread(call, base, "GET", "/api/v1/summary", READ))[0] == 200
        status, body = await asyncio.to_thread(call, base, "POST", "/api/v1/flush", READ, {})
        assert (status, body["error"]) == (403, "token 'dashboard' is read-only")


class TestMessages:
    """Listing with filters and paging; detail is audited; bad parameters are 400s."""

    async def test_list_filter_and_page(self, base: str) -> None:
        """Two stuck recalls, most urgent first; pages of one; filters apply."""
        status, page = await asyncio.to_thread(call, base, "GET", "/api/v1/messages", READ)
        assert status == 200
        assert page["total"] == 2
        assert {i["class"] for i in page["items"]} == {"recall_emergency"}
        assert "subject" not in page["items"][0]
        _, first = await asyncio.to_thread(call, base, "GET", "/api/v1/messages?limit=1", READ)
        _, second = await asyncio.to_thread(
            call, base, "GET", "/api/v1/messages?limit=1&offset=1", READ
        )
        assert len(first["items"]) == len(second["items"]) == 1
        assert first["items"][0]["id"] != second["items"][0]["id"]
        _, everything = await asyncio.to_thread(
            call, base, "GET", "/api/v1/messages?stuck=false&priority=P4", READ
        )
        assert [i["class"] for i in everything["items"]] == ["general"]

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("priority=P9", "priority: 'P9' is not a priority"),
            ("older_than=10%20minuts", "older_than: "),
            ("limit=0", "limit must be 1..1000"),
            ("stuck=maybe", "stuck: use true or false"),
            ("class=nope", "class: unknown class 'nope'"),
            ("limit=ten", "limit and offset must be integers"),
        ],
    )
    async def test_bad_parameters(self, base: str, query: str, message: str) -> None:
        """Each bad parameter is a 400 naming it."""
        status, body = await asyncio.to_thread(call, base, "GET", f"/api/v1/messages?{query}", READ)
        assert status == 400
        assert body["error"].startswith(message)

    async def test_detail_is_audited(self, base: str, settings: Settings) -> None:
        """Viewing a message's detail (subject, addresses) writes who, when and which."""
        _, page = await asyncio.to_thread(call, base, "GET", "/api/v1/messages", READ)
        key = page["items"][0]["id"]
        status, detail = await asyncio.to_thread(call, base, "GET", f"/api/v1/messages/{key}", READ)
        assert status == 200
        fields = dict(detail["fields"])
        assert "Emergency recall" in fields["subject"]
        with Store(settings.store.path) as store:
            record = store.audit_trail(1)[0]
        assert (record.actor, record.action, record.target) == (
            "dashboard",
            "view",
            f"message {key}",
        )
        assert (await asyncio.to_thread(call, base, "GET", "/api/v1/messages/NOPE", READ))[0] == 404

    async def test_near_miss_subjects_are_audited(self, base: str, settings: Settings) -> None:
        """Near misses are counts; asking for subjects is audited; bad parameters are 400s."""
        path = "/api/v1/classification/near-misses"
        status, body = await asyncio.to_thread(call, base, "GET", path, READ)
        assert status == 200
        assert all("subjects" not in term for term in body["terms"])
        status, body = await asyncio.to_thread(
            call, base, "GET", f"{path}?show_subjects=true", READ
        )
        assert status == 200
        with Store(settings.store.path) as store:
            record = store.audit_trail(1)[0]
        assert (record.actor, record.action, record.target) == (
            "dashboard", "view", "near-miss subjects",
        )  # fmt: skip
        for query in ("since=forever", "since=0s", "show_subjects=maybe"):
            status, body = await asyncio.to_thread(call, base, "GET", f"{path}?{query}", READ)
            assert status == 400
            assert body["error"].startswith(query.split("=")[0])


class TestActionsOverApi:
    """Alerts, silences and queue actions with a write token, all audited."""

    async def test_ack_silence_hold(self, base: str, postfix: PrivatePostfix) -> None:
        """Ack the firing P1 alert, silence a class, hold and release a message."""
        for _ in range(50):
            _, view = await asyncio.to_thread(call, base, "GET", "/api/v1/alerts", READ)
            firing = [a for a in view["alerts"] if a["rule"] == "p1_stuck"]
            if firing:
                break
            await asyncio.sleep(0.2)
        alert_id = firing[0]["id"]
        status, acked = await asyncio.to_thread(
            call, base, "POST", f"/api/v1/alerts/{alert_id}/ack", WRITE, {"note": "phoned PPCS"}
        )
        assert (status, acked["status"], acked["acked_by"]) == (200, "acknowledged", "on-call")
        status, _ = await asyncio.to_thread(
            call, base, "POST", f"/api/v1/alerts/{alert_id}/ack", WRITE, {}
        )
        assert status == 409  # already acknowledged
        status, created = await asyncio.to_thread(
            call, base, "POST", "/api/v1/silences", WRITE,
            {"class": "safeguarding", "for": "2h", "reason": "MASH outage"},
        )  # fmt: skip
        assert status == 201
        path = f"/api/v1/silences/{created['id']}"
        assert (await asyncio.to_thread(call, base, "DELETE", path, WRITE))[0] == 200
        queue_id = str(postfix.queue()[0]["queue_id"])
        status, result = await asyncio.to_thread(
            call, base, "POST", f"/api/v1/messages/{queue_id}/hold", WRITE, {}
        )
        assert status == 200, result
        assert "placed on hold" in result["output"]
        assert any(e["queue_name"] == "hold" for e in postfix.queue())
        status, _ = await asyncio.to_thread(
            call, base, "POST", f"/api/v1/messages/{queue_id}/release", WRITE, {}
        )
        assert status == 200


class TestOpenApi:
    """docs/openapi.yaml is a valid spec, lists exactly the routes, and matches responses."""

    def test_spec_lists_exactly_the_routes(self) -> None:
        """Every implemented route is documented and every documented route exists."""
        spec = yaml.safe_load(OPENAPI.read_text())
        validate_spec(spec)
        documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
        implemented = {(m, p) for m, p, _ in api.ROUTES} | {
            ("GET", p) for p in ("/metrics", "/healthz", "/readyz", "/")
        }
        assert documented == implemented

    async def test_responses_match_the_schemas(self, base: str) -> None:
        """GET responses validate against the documented schemas."""
        spec = yaml.safe_load(OPENAPI.read_text())
        schemas = spec["components"]["schemas"]

        def check(path: str, name: str) -> None:
            status, body = call(base, "GET", path, READ)
            assert status == 200
            schema = {**schemas[name], "components": {"schemas": schemas}}
            text = json.dumps(schema).replace("#/components/schemas/", "#/components/schemas/")
            jsonschema.validate(body, json.loads(text))

        await asyncio.to_thread(check, "/api/v1/summary", "Summary")
        await asyncio.to_thread(check, "/api/v1/messages?stuck=false", "MessagePage")
        await asyncio.to_thread(check, "/api/v1/alerts?all=true", "Alerts")
        await asyncio.to_thread(check, "/api/v1/shape", "Shape")
        await asyncio.to_thread(check, "/api/v1/classification/near-misses", "NearMisses")


class TestRemoteCli:
    """`--server` gives the same answers as the local store."""

    async def test_stuck_and_alerts_same_either_way(
        self, base: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Stuck --json and alerts --json agree, local and remote (ages aside)."""
        config = str(tmp_path / "mailwatch.toml")
        monkeypatch.setenv("MAILWATCH_TOKEN", READ)
        runner = CliRunner()

        def both(*args: str) -> tuple[Any, Any]:
            local = runner.invoke(cli, ["-c", config, *args], catch_exceptions=False)
            remote = runner.invoke(cli, ["-c", config, *args, "--server", base],
                                   catch_exceptions=False)  # fmt: skip
            assert (local.exit_code, remote.exit_code) == (0, 0), remote.stderr
            return json.loads(local.stdout), json.loads(remote.stdout)

        def ageless(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: v for k, v in i.items() if not k.startswith("age")} for i in items]

        local, remote = await asyncio.to_thread(both, "stuck", "--json")
        assert ageless(local) == ageless(remote)
        assert len(local) == 2
        local, remote = await asyncio.to_thread(both, "alerts", "--json")
        assert local["alerts"] == remote["alerts"]
        local, remote = await asyncio.to_thread(both, "shape", "--json")
        assert local == remote
        assert local["rows"]
