"""A real Postfix relaying to fault-injecting fake relays (issue 15, item 4).

Reason categories are checked everywhere, and the ``destination_deferring`` alert fires and
resolves on a real Alertmanager.

The Postfix is real (a private instance); what it relays to is not: each destination domain
is routed (``transport_maps``) to a loopback port where a **fake relay** (aiosmtpd, a
:class:`FaultInjectingRelay`) answers the code chosen for it, because no real server can be
told to be busy on demand. Per domain:

===============  ===================================================  ============
domain           what Postfix meets                                  category
===============  ===================================================  ============
busy.example     ``451 4.7.500 Server busy`` to RCPT (Microsoft 365)  throttled
closing.example  ``421 4.7.0 Try again later, closing connection``   throttled
tls.example      no STARTTLS offered, transport requires TLS          tls
refused.example  a closed port (connection refused)                   connect
reject.example   ``451 4.3.2``, then ``550 5.7.1 … spam`` (bounces)    policy
(any other)      the relayhost, on a closed port of 127.0.0.2         relay_down
===============  ===================================================  ============

Each message's category is checked in ``mailwatch stuck --json``, ``mailwatch show``, the
API (``GET /api/v1/messages``) and ``/metrics``. Then the busy relay starts accepting, the
queue is flushed, and the alert that fired for busy.example (P1 mail deferring) resolves in
Alertmanager; no address or subject ever reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.alertmanager import PrivateAlertmanager
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.web.runner import run_service

pytestmark = [pytest.mark.postfix, pytest.mark.alertmanager]

T = TypeVar("T")
TOKEN = "read-token-for-the-fault-test"
SUBJECT = "Emergency recall - Joe Bloggs CRN X123456"
EXPECTED = {
    "busy.example": "throttled",
    "closing.example": "throttled",
    "tls.example": "tls",
    "refused.example": "connect",
    "reject.example": "policy",
    "elsewhere.example": "relay_down",
}


class FaultInjectingRelay:
    """A FAKE SMTP relay (aiosmtpd) answering RCPT with a chosen reply; ``None``: accept."""

    def __init__(self, rcpt_reply: str | None) -> None:
        self.rcpt_reply = rcpt_reply
        self.accepted: list[str] = []

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        """Answer the chosen code (or accept the recipient)."""
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Accept the message."""
        self.accepted.extend(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


@contextlib.contextmanager
def relay(handler: FaultInjectingRelay, port: int) -> Iterator[None]:
    """The fake relay listening on ``127.0.0.1:port`` (no STARTTLS offered)."""
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


@pytest.fixture(name="faulty")
def fixture_faulty(
    tmp_path: Path,
) -> Iterator[tuple[PrivatePostfix, FaultInjectingRelay, FaultInjectingRelay]]:
    """The real Postfix, its transports pointed at the fake relays (all started)."""
    ports = {name: free_port() for name in ("busy", "closing", "tls", "reject", "refused")}
    busy = FaultInjectingRelay("451 4.7.500 Server busy. (S77714) [BN8NAM12FT004.eop.nam12]")
    handlers = {
        "busy": busy,
        "closing": FaultInjectingRelay("421 4.7.0 Try again later, closing connection."),
        "tls": FaultInjectingRelay(None),
        "reject": FaultInjectingRelay("451 4.3.2 System not accepting network messages"),
    }
    instance = PrivatePostfix.create(
        tmp_path / "pf",
        transports={
            "busy.example": f"smtp:[127.0.0.1]:{ports['busy']}",
            "closing.example": f"smtp:[127.0.0.1]:{ports['closing']}",
            "tls.example": f"smtptls:[127.0.0.1]:{ports['tls']}",
            "reject.example": f"smtp:[127.0.0.1]:{ports['reject']}",
            "refused.example": f"smtp:[127.0.0.1]:{ports['refused']}",  # nobody listens
        },
        extra={"relayhost": f"[127.0.0.2]:{free_port()}"},  # nobody listens either
        services=("smtptls unix - - n - - smtp -o smtp_tls_security_level=encrypt",),
    )
    with contextlib.ExitStack() as stack:
        for name, handler in handlers.items():
            stack.enter_context(relay(handler, ports[name]))
        instance.start()
        stack.callback(instance.stop)
        yield instance, busy, handlers["reject"]


@pytest.fixture(name="alertmanager")
def fixture_alertmanager(tmp_path: Path) -> Iterator[PrivateAlertmanager]:
    """A real Alertmanager of this test's own."""
    instance = PrivateAlertmanager.create(tmp_path / "am")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def write_settings(tmp_path: Path, postfix: PrivatePostfix, am: PrivateAlertmanager) -> Settings:
    """Postfix and its log every second; recalls stuck after 1s; the deferral alert to AM."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f"""
[store]
path = "mw.db"
[http]
listen = "127.0.0.1:{free_port()}"
[[http.tokens]]
name = "dashboard"
scope = "read"
secret = {{ env = "MW_FAULTS_READ" }}
[metrics]
partner_domains = ["busy.example", "tls.example"]
deferral_window = "5s"
[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "1s"
[sources.mta1_log]
type = "maillog"
path = "{postfix.log_path}"
outcomes_for = "mta1"
interval = "1s"
[classes.recall_emergency]
priority = "P1"
stuck_after = "1s"
[[classes.recall_emergency.match]]
subject = 'emergency\\s+recall'
[receivers.am]
type = "alertmanager"
urls = ["{am.url}"]
resend_every = 1.0
[[alerts]]
name = "destination_deferring"
condition = "destination_deferring"
priorities = ["P1"]
receivers = ["am"]
""")
    return load(config)


async def eventually(check: Callable[[], T], within: float, what: str) -> T:
    """Poll ``check`` (in a thread) until truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.3)


def get(url: str) -> str:
    """GET ``url`` and return the body."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """``mailwatch run`` in the test's event loop; yields its base URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    try:
        yield f"http://{settings.http.listen}"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


def cli_json(config: Path, *args: str) -> Any:
    """Run a mailwatch command with ``--json`` and decode its output.

    ``None`` when it failed, e.g. before the service created the store.
    """
    result = CliRunner().invoke(cli, ["-c", str(config), *args, "--json"])
    try:
        return json.loads(result.output)  # exit 1 when something is stuck
    except json.JSONDecodeError:
        return None


def categories_by_domain(items: list[dict[str, Any]]) -> dict[str, str]:
    """Recipient domain → reason category, for the injected recalls."""
    return {d: i["reason_category"] for i in items for d in i["recipient_domains"]
            if d in EXPECTED}  # fmt: skip


async def test_categories_everywhere_and_the_alert_fires_and_resolves(
    tmp_path: Path,
    faulty: tuple[PrivatePostfix, FaultInjectingRelay, FaultInjectingRelay],
    alertmanager: PrivateAlertmanager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """busy, 421, TLS, refused, 5.7.1, relay down: right in stuck/show/API/metrics; alert."""
    postfix, busy, reject = faulty
    monkeypatch.setenv("MW_FAULTS_READ", TOKEN)
    settings = write_settings(tmp_path, postfix, alertmanager)
    config = tmp_path / "mailwatch.toml"
    await asyncio.to_thread(postfix.inject, [make_message(SUBJECT, to=f"ppcs@{domain}")
                                             for domain in EXPECTED])  # fmt: skip
    async with serving(settings) as base:

        def stuck_now() -> dict[str, str]:
            listed = cli_json(config, "stuck")
            return categories_by_domain(listed) if listed else {}

        last: dict[str, str] = {}

        def all_right(expected: dict[str, str]) -> Callable[[], bool]:
            def check() -> bool:
                last.update(stuck_now())
                return last == expected

            return check

        try:  # reject.example first defers (seen queued), then rejects for good (5.7.1)
            await eventually(all_right({**EXPECTED, "reject.example": "throttled"}), 30,
                             "every recall stuck with its category")  # fmt: skip
            reject.rcpt_reply = "550 5.7.1 Message rejected as spam by Content Filtering."
            await asyncio.to_thread(postfix.flush)
            await eventually(all_right(EXPECTED), 30, "the rejected recall listed as bounced")
        finally:
            print("stuck categories:", last)
        listed = cli_json(config, "stuck")
        busy_id = next(i["id"] for i in listed if i["recipient_domains"] == ["busy.example"])
        show = CliRunner().invoke(cli, ["-c", str(config), "show", busy_id])
        assert re.search(r"reason category\s+throttled", show.output), show.output
        assert "451 4.7.500" in show.output
        status, page = await asyncio.to_thread(api_get, base, "/api/v1/messages?stuck=true")
        assert status == 200
        assert categories_by_domain(page["items"]) == EXPECTED
        lines = [
            f'mailwatch_stuck_messages_by_reason{{priority="P1",reason="{category}",'
            f'source="mta1"}} {count}.0'
            for category, count in (("throttled", 2), ("tls", 1), ("connect", 1),
                                    ("relay_down", 1))
        ]  # fmt: skip

        def metrics_agree() -> str:
            # The mail log's "removed" makes the metrics let go of the rejected recall at once
            # (mailwatch.core.tracked.Backlog.discard), but its "status=bounced" line can be
            # read one log probe before that line is written: until then the store says
            # bounced and the kept backlog still counts it queued, for one log interval.
            text = get(f"{base}/metrics")
            return text if all(line in text for line in lines) else ""

        metrics = await eventually(metrics_agree, 30, "the metrics' stuck reasons as the API's")
        assert (
            'mailwatch_destination_reason_share{destination="busy.example",reason="throttled"} 1.0'
            in metrics
        )
        assert (
            'mailwatch_destination_reason_share{destination="tls.example",reason="tls"} 1.0'
            in metrics
        )

        matcher = 'source="busy.example"'
        (alert,) = await eventually(lambda: alertmanager.alerts(matcher), 15, "alert in AM")
        assert alert["labels"] == {"alertname": "destination_deferring", "priority": "P1",
                                   "source": "busy.example", "severity": "page"}  # fmt: skip
        assert alert["annotations"]["reason_categories"] == "throttled"
        assert "classes: recall_emergency" in alert["annotations"]["summary"]
        assert "ppcs@" not in json.dumps(alert)
        assert "Bloggs" not in json.dumps(alert)
        assert "X123456" not in json.dumps(alert)

        busy.rcpt_reply = None  # the remote is no longer busy: it drains
        await asyncio.to_thread(postfix.flush)
        await eventually(lambda: busy.accepted, 20, "busy.example accepted the recall")
        await eventually(lambda: not alertmanager.alerts(matcher), 20, "alert resolved in AM")


def api_get(base: str, path: str) -> tuple[int, Any]:
    """GET an API path with the read token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(base + path, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return response.status, json.loads(response.read())
