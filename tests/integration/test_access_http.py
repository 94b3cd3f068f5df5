"""Access on the real aiohttp application on loopback: tokens, headers, the audit's actor.

No mail server is needed: a service with no sources still serves the API and the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from mailwatch.app.service import Service
from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.store import Store
from mailwatch.web import api, keys
from mailwatch.web import server as http

WRITE, READ = "write-secret-for-tests", "read-secret-for-tests"


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tokens: a write token, a read token, and a write token whose secret file is empty."""
    monkeypatch.setenv("MW_WRITE", WRITE)
    monkeypatch.setenv("MW_READ", READ)
    (tmp_path / "empty.secret").write_text("")
    config = tmp_path / "mailwatch.toml"
    config.write_text(f"""
[store]
path = "{tmp_path / "mw.db"}"
[[http.tokens]]
name = "on-call"
scope = "write"
secret = {{ env = "MW_WRITE" }}
[[http.tokens]]
name = "dashboard"
scope = "read"
secret = {{ env = "MW_READ" }}
[[http.tokens]]
name = "forgotten"
scope = "write"
secret = {{ file = "{tmp_path / "empty.secret"}" }}
""")
    return config


@pytest.fixture(name="settings")
def fixture_settings(config: Path) -> Settings:
    """The loaded configuration."""
    return load(config)


@pytest.fixture(name="store")
def fixture_store(settings: Settings) -> Iterator[Store]:
    """The service's store."""
    with Store(settings.store.path) as store:
        yield store


@pytest.fixture(name="base")
async def fixture_base(settings: Settings, store: Store) -> AsyncIterator[str]:
    """The whole application (API, page, metrics) served on a loopback port."""
    runner = await http.start(api.build(Service(settings, store, []), settings), "127.0.0.1", 0)
    yield f"http://127.0.0.1:{http.bound_port(runner)}"
    await runner.cleanup()


def call(base: str, method: str, path: str, authorization: str | None = None,
         body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:  # fmt: skip
    """One request; (status, headers, decoded body). Header text is sent as Latin-1 bytes."""
    headers = {"Authorization": authorization} if authorization is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, exc.headers
    kind = got.get("Content-Type", "")
    return status, got, json.loads(raw) if kind.startswith("application/json") else raw.decode()


def utf8_on_the_wire(text: str) -> str:
    """``text`` spelled so that http.client (Latin-1) sends its UTF-8 bytes."""
    return text.encode().decode("latin-1")


class TestTokens:
    """Item 13 and the scheme of item 17."""

    async def test_unicode_space_does_not_match_an_empty_secret(self, base: str) -> None:
        """``Bearer <U+00A0>`` (and other blanks) cannot flush with the empty write token."""
        for blank in ("\u00a0", "\u2003", "\u3000", "\ufeff", " ", ""):
            header = utf8_on_the_wire(f"Bearer {blank}")
            status, _, body = await _in_thread(call, base, "POST", "/api/v1/flush", header, {})
            assert status == 401, (blank, body)

    async def test_scheme_is_case_insensitive(self, base: str) -> None:
        """``bearer`` and ``BEARER`` work (RFC 7235); the token itself is exact."""
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert (await _in_thread(call, base, "GET", "/api/v1/summary", f"{scheme} {READ}"))[
                0
            ] == 200
        wrong = f"Bearer {READ.upper()}"
        assert (await _in_thread(call, base, "GET", "/api/v1/summary", wrong))[0] == 401


class TestHeaders:
    """Item 17: security headers on the page, on the API and on errors."""

    async def test_status_page(self, base: str) -> None:
        """CSP (nothing but the page's own style), no framing, nosniff, no referrer, no-store."""
        status, headers, html = await _in_thread(call, base, "GET", "/")
        assert status == 200
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        style = re.search(r"<style>(.*?)</style>", html, re.S)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in csp  # the page's style is allowed, nothing else
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"

    async def test_api_and_errors(self, base: str) -> None:
        """API answers (personal data) are never cached; errors carry the headers too."""
        status, headers, _ = await _in_thread(
            call, base, "GET", "/api/v1/messages", f"Bearer {READ}"
        )
        assert (status, headers["Cache-Control"]) == (200, "no-store")
        assert headers["X-Content-Type-Options"] == "nosniff"
        status, headers, _ = await _in_thread(call, base, "GET", "/api/v1/messages")
        assert (status, headers["Cache-Control"]) == (401, "no-store")
        status, headers, _ = await _in_thread(call, base, "GET", "/nowhere", f"Bearer {READ}")
        assert (status, headers["X-Content-Type-Options"]) == (404, "nosniff")


class TestAudit:
    """Item 14: the token's name is the actor; ``by`` is recorded apart, as on behalf of."""

    async def test_silence_in_someone_elses_name(
        self, base: str, store: Store, config: Path
    ) -> None:
        """A writer naming someone else is recorded as the token, acting for that name."""
        status, _, created = await _in_thread(
            call, base, "POST", "/api/v1/silences", f"Bearer {WRITE}",
            {"class": "general", "for": "1h", "reason": "maintenance", "by": "duty manager"},
        )  # fmt: skip
        assert status == 201, created
        record = store.audit_trail(1)[0]
        assert (record.actor, record.on_behalf_of, record.action) == (
            "on-call", "duty manager", "silence",
        )  # fmt: skip
        (silence,) = store.silences(record.at)
        assert silence.by == "duty manager (via on-call)"
        shown = CliRunner().invoke(cli, ["-c", str(config), "audit", "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)[0] | {"at": None} == {
            "at": None, "actor": "on-call", "on_behalf_of": "duty manager",
            "action": "silence", "target": f"silence {created['id']}",
            "detail": json.loads(shown.stdout)[0]["detail"],
        }  # fmt: skip
        table = CliRunner().invoke(cli, ["-c", str(config), "audit"])
        assert "ON BEHALF OF" in table.stdout
        assert "duty manager" in table.stdout

    async def test_no_by_means_no_on_behalf_of(self, base: str, store: Store) -> None:
        """Without ``by`` the token's name alone is recorded."""
        status, _, _ = await _in_thread(
            call, base, "POST", "/api/v1/silences", f"Bearer {WRITE}",
            {"class": "general", "for": "1h", "reason": "maintenance"},
        )  # fmt: skip
        assert status == 201
        record = store.audit_trail(1)[0]
        assert (record.actor, record.on_behalf_of) == ("on-call", None)


async def _in_thread(func: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(func, *args)


def test_app_builds_without_tokens(tmp_path: Path) -> None:
    """No tokens configured: the table is empty and the app still builds."""
    settings = load(None)
    with Store(tmp_path / "mw.db") as store:
        app = api.build(Service(settings, store, []), settings)
    assert isinstance(app, web.Application)
    assert app[keys.TOKENS_KEY].names == []
