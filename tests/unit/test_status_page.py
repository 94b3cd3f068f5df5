"""The duty manager's page (issue 16): tiles, class pages, sign-in, acting through forms.

The real application (``api.build``) on aiohttp's test server, over a real store scanned from
a fake queue source (``FakeQueueSource``: fixed messages, no MTA); the browser tests against a
real Postfix and Alertmanager are in tests/integration/test_status_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mailwatch.alerting.lifecycle import AlertKey, AlertState, AlertStatus
from mailwatch.app.service import Service
from mailwatch.config.settings import load
from mailwatch.core.model import Message, QueueObservation, Recipient
from mailwatch.store import Store
from mailwatch.web import api
from mailwatch.web.sessions import COOKIE

WRITE, READ, SUBJECTS = "page-write-token", "page-read-token", "page-subjects-token"
NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)
ALERT = AlertKey("p1_stuck", "recall_emergency", "mta1")


def _message(queue_id: str, queue: str, age: timedelta, subject: str, to: str,
             reason: str | None = None) -> Message:  # fmt: skip
    arrival = NOW - age
    return Message(
        f"mta1/{queue_id}/{int(arrival.timestamp())}", "mta1", queue_id, queue, arrival, 1000,
        "sender@probation.example", (Recipient(to, reason),), subject=subject,
    )  # fmt: skip


MESSAGES = [
    _message("A0HELD", "hold", 3 * MIN, "Emergency recall - Alice Example", "ppcs@justice.example"),
    _message("B0HELD", "hold", 2 * MIN, "Emergency recall - Bob Example", "ppcs@justice.example"),
    _message("C0SLOW", "deferred", 40 * MIN, "Emergency recall - Carol", "x@police.example",
             "connect to mx.police.example[192.0.2.1]:25: Connection timed out"),
    _message("D0PAY", "deferred", 1 * MIN, "Pay day", "hr@probation.example"),
]  # fmt: skip


@dataclass
class FakeQueueSource:
    """A fake Postfix source: returns the messages it is given, observed at ``NOW``."""

    name: str
    messages: list[Message] = field(default_factory=list)

    async def probe(self) -> QueueObservation:
        """Everything it holds, as one observation."""
        return QueueObservation(self.name, NOW, tuple(self.messages))


def _config(tmp_path: Path, open_root: bool, extra: str = "") -> Path:
    tokens = "".join(
        f'[[http.tokens]]\nname = "{name}"\nscope = "{scope}"\nsubjects = {subjects}\n'
        f'secret = {{ env = "MW_PAGE_{name.upper()}" }}\n'
        for name, scope, subjects in (("duty", "write", "false"), ("wall", "read", "false"),
                                      ("lead", "read", "true"))
    )  # fmt: skip
    paths = '["/metrics", "/healthz", "/readyz", "/"]' if open_root else '["/healthz"]'
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f'[store]\npath = "mw.db"\n[http]\nopen_paths = {paths}\n{tokens}'
        '[sources.mta1]\ntype = "postfix"\n'
        '[status]\nrunbook_base_url = "https://docs.example/runbooks.md"\n' + extra,
        encoding="utf-8",
    )
    return config


@pytest.fixture(name="make_client")
async def fixture_make_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    """Build a client of the whole application over a scanned store (one firing alert)."""
    for name, secret in (("DUTY", WRITE), ("WALL", READ), ("LEAD", SUBJECTS)):
        monkeypatch.setenv(f"MW_PAGE_{name}", secret)
    made: list[tuple[TestClient[Any, Any], Store]] = []

    async def make(open_root: bool = True, extra: str = "") -> tuple[TestClient[Any, Any], Store]:
        settings = load(_config(tmp_path, open_root, extra))
        store = Store(settings.store.path)
        source = FakeQueueSource("mta1", MESSAGES)
        service = Service(settings, store, [source], clock=lambda: NOW)
        await service.probe_once(source)
        store.save_alerts([AlertState(ALERT, AlertStatus.FIRING, since=NOW, fired_at=NOW)], [],
                          NOW)  # fmt: skip
        client: TestClient[Any, Any] = TestClient(TestServer(api.build(service, settings)))
        await client.start_server()
        made.append((client, store))
        return client, store

    yield make
    for client, store in made:
        await client.close()
        store.close()


async def _login(client: TestClient[Any, Any], token: str) -> None:
    origin = str(client.make_url("/")).rstrip("/")
    reply = await client.post("/login", data={"token": token, "next": "/"},
                              headers={"Origin": origin}, allow_redirects=False)  # fmt: skip
    assert reply.status == 303, await reply.text()
    assert token not in reply.headers["Location"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form on the page"
    return found.group(1)


class TestOverview:
    """What / why / since when / where / who / what next, on one page."""

    async def test_tiles_say_why_where_since_and_who(self, make_client: Any) -> None:
        """Human name, description, held 67% / connect 33%, domains, firing, runbook, local time."""
        client, _ = await make_client()
        html = await (await client.get("/")).text()
        tile = html[html.index('data-class="recall_emergency"') :]
        tile = tile[: tile.index("</section>")]
        assert "Emergency recall</a>" in tile  # the name people use, not the identifier
        assert "licence to be revoked" in tile  # the class's description
        assert 'data-stuck="3"' in tile
        assert "3</span> stuck of 3 waiting" in tile
        assert "held 67% (2), connect 33% (1)" in tile
        assert "justice.example (2)" in tile
        assert "police.example (1)" in tile
        assert "queue deferred, hold" in tile
        assert "firing since" in tile
        assert "https://docs.example/runbooks.md#mailwatchp1stuck" in tile
        assert "not enough data yet" in tile  # a fresh service: never "never"
        assert "never" not in tile
        assert re.search(r"oldest since</dt><dd>\d\d:\d\d (GMT|BST) \(4\dm", tile)  # 40m at import
        assert "\u26a0</span> stuck" in tile  # text and icon, not colour alone
        assert "<svg" in tile  # P1: the trend chart
        assert "Alice" not in html
        assert "Emergency recall - " not in html

    async def test_one_rule_firing_in_two_sources_reads_apart(self, make_client: Any) -> None:
        """The same rule firing for a class in two sources: each alert line names its source."""
        client, store = await make_client()
        other = AlertKey("p1_stuck", "recall_emergency", "mta2")
        store.save_alerts([AlertState(ALERT, AlertStatus.FIRING, since=NOW, fired_at=NOW),
                           AlertState(other, AlertStatus.FIRING, since=NOW, fired_at=NOW)], [],
                          NOW)  # fmt: skip
        html = await (await client.get("/")).text()
        tile = html[html.index('data-class="recall_emergency"') :]
        tile = tile[: tile.index("</section>")]
        assert "<strong>p1_stuck</strong> on mta1: firing since" in tile
        assert "<strong>p1_stuck</strong> on mta2: firing since" in tile

    async def test_p1_first_then_urgency(self, make_client: Any) -> None:
        """The P1 section starts with the stuck P1 class; its tiles are all P1."""
        client, _ = await make_client()
        html = await (await client.get("/")).text()
        p1 = html[html.index('id="p1"') : html.index('id="others"')]
        states = re.findall(r'data-class="([a-z_]+)" data-stuck="\d+" data-state="(\w+)"', p1)
        assert states[0] == ("recall_emergency", "red")
        assert [s for _, s in states] == sorted((s for _, s in states),
                                                key=["red", "amber", "green"].index)  # fmt: skip

    async def test_policy_and_refresh(self, make_client: Any) -> None:
        """CSP: own style by hash, no script, forms to self only; the page refreshes itself."""
        client, _ = await make_client()
        reply = await client.get("/")
        html, csp = await reply.text(), reply.headers["Content-Security-Policy"]
        style = re.search(r"<style>(.*?)</style>", html, re.S)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in csp
        assert "form-action 'self'" in csp
        assert "script-src" not in csp
        assert "<script" not in html
        assert ' style="' not in html
        assert '<meta http-equiv="refresh" content="30">' in html

    async def test_descriptions_are_escaped(self, make_client: Any) -> None:
        """A class description with markup is shown as text, not run."""
        extra = ('[classes.general]\npriority = "P4"\nstuck_after = "1d"\n'
                 'description = "<script>alert(1)</script>: & co"\n')  # fmt: skip
        client, _ = await make_client(extra=extra)
        html = await (await client.get("/")).text()
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


class TestAccess:
    """Sign in with a token (never in a URL); the page works with / closed."""

    async def test_closed_root_redirects_to_login(self, make_client: Any) -> None:
        """Anonymous: 303 to /login; after signing in the page loads from the cookie alone."""
        client, _ = await make_client(open_root=False)
        reply = await client.get("/", allow_redirects=False)
        assert (reply.status, reply.headers["Location"]) == (303, "/login?next=/")
        assert 'type="password"' in await (await client.get("/login")).text()
        await _login(client, READ)
        html = await (await client.get("/")).text()
        assert 'data-class="recall_emergency"' in html
        assert "signed in as" in html

    async def test_cookie_flags_and_bad_tokens(self, make_client: Any) -> None:
        """HttpOnly, SameSite=Strict, no token in it; a wrong token or a foreign origin fail."""
        client, _ = await make_client(open_root=False)
        origin = str(client.make_url("/")).rstrip("/")
        bad = await client.post("/login", data={"token": "nope"}, headers={"Origin": origin})
        assert bad.status == 401
        foreign = await client.post("/login", data={"token": READ},
                                    headers={"Origin": "https://evil.example"})  # fmt: skip
        assert foreign.status == 403
        reply = await client.post("/login", data={"token": READ}, headers={"Origin": origin},
                                  allow_redirects=False)  # fmt: skip
        cookie = reply.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert READ not in cookie

    async def test_forged_cookie_is_refused(self, make_client: Any) -> None:
        """A cookie naming a token without the server's signature signs nobody in."""
        client, _ = await make_client(open_root=False)
        forged = base64.urlsafe_b64encode(b"duty").decode().rstrip("=")
        client.session.cookie_jar.update_cookies({COOKIE: f"{forged}.9999999999.n.sig"})
        assert (await client.get("/", allow_redirects=False)).status == 303

    async def test_class_page_subjects_only_when_allowed(self, make_client: Any) -> None:
        """Queue ids, reasons and domains for any token; subjects only with subjects = true."""
        client, store = await make_client()
        assert (await client.get("/class/recall_emergency", allow_redirects=False)).status == 303
        await _login(client, READ)
        html = await (await client.get("/class/recall_emergency")).text()
        assert "A0HELD" in html
        assert "C0SLOW" in html
        assert "police.example" in html
        assert "Connection timed out" in html
        assert "Alice" not in html
        await _login(client, SUBJECTS)
        html = await (await client.get("/class/recall_emergency")).text()
        assert "Emergency recall - Alice Example" in html
        record = store.audit_trail(1)[0]
        assert (record.actor, record.action) == ("lead", "view")


class TestActing:
    """Acknowledge and silence through the forms: CSRF-safe, audited as the token."""

    async def test_ack_through_the_form(self, make_client: Any) -> None:
        """The form acknowledges as the token's name; a ``by`` in the body changes nothing."""
        client, store = await make_client()
        await _login(client, WRITE)
        html = await (await client.get("/")).text()
        origin = str(client.make_url("/")).rstrip("/")
        form = {"csrf": _csrf(html), "alert": str(ALERT), "note": "calling PPCS",
                "next": "/", "by": "someone else", "actor": "mallory"}  # fmt: skip
        reply = await client.post("/actions/ack", data=form, headers={"Origin": origin})
        page = await reply.text()
        assert "Alert acknowledged." in page
        assert re.search(r"acknowledged by duty at \d\d:\d\d", page)
        assert "calling PPCS" in page
        record = store.audit_trail(1)[0]
        assert (record.actor, record.action, record.on_behalf_of) == ("duty", "ack", None)
        assert store.alert_states()[ALERT].acked_by == "duty"

    async def test_refused_without_csrf_origin_or_write(self, make_client: Any) -> None:
        """No CSRF token, another session's, a foreign Origin or a read token: refused."""
        client, store = await make_client()
        origin = str(client.make_url("/")).rstrip("/")
        await _login(client, READ)
        read_csrf = _csrf(await (await client.get("/")).text())
        form = {"alert": str(ALERT), "note": "x", "csrf": read_csrf}
        assert (await client.post("/actions/ack", data=form, headers={"Origin": origin})
                ).status == 403  # fmt: skip
        await _login(client, WRITE)
        for data, headers in (({**form, "csrf": ""}, {"Origin": origin}),
                              (form, {"Origin": origin}),  # the read session's token
                              ({**form, "csrf": _csrf(await (await client.get("/")).text())},
                               {"Origin": "https://evil.example"})):  # fmt: skip
            assert (await client.post("/actions/ack", data=data, headers=headers)).status == 403
        assert store.alert_states()[ALERT].status is AlertStatus.FIRING

    async def test_silence_through_the_form(self, make_client: Any) -> None:
        """A class silenced for 2h by the token's name; the tile says until when."""
        client, store = await make_client()
        await _login(client, WRITE)
        html = await (await client.get("/class/recall_emergency")).text()
        origin = str(client.make_url("/")).rstrip("/")
        form = {
            "csrf": _csrf(html),
            "class": "recall_emergency",
            "for": "2h",
            "reason": "PPCS mail server maintenance",
            "next": "/class/recall_emergency",
        }
        reply = await client.post("/actions/silence", data=form, headers={"Origin": origin})
        assert "Class silenced." in await reply.text()
        assert reply.url.path == "/class/recall_emergency"
        (silence,) = store.silences(datetime.now(UTC))
        assert (silence.class_name, silence.by) == ("recall_emergency", "duty")
        assert store.audit_trail(1)[0].actor == "duty"
        bad = await client.post("/actions/silence", data={**form, "for": "90d"},
                                headers={"Origin": origin})  # fmt: skip
        assert bad.status == 400
