"""Alert delivery to real receivers: Alertmanager, an HMAC-signed webhook, an SMTP relay.

Design of this module (it must stay well under a minute):

* **One real Alertmanager for the session** (``alertmanager``), started on loopback as the
  project's notes say, routing everything it receives to a small stdlib HTTP server
  (``am_notices``) with ``send_resolved``: what Alertmanager itself would tell the duty
  managers, resolutions included (``GET /api/v2/alerts`` never lists resolved alerts).
  Alerts stay in it between tests, so every test uses its own ``source`` label.
* **End to end** (``TestAlertmanagerEndToEnd``, ``TestWebhookAndEmailEndToEnd``): the real
  Postfix (``postfix`` fixture), ``mailwatch.web.runner.run_service`` in the test's event loop,
  recalls stuck after 1 s and probes every second. Blocking calls (Postfix commands, urllib)
  run in threads so the service keeps running meanwhile.
* **Lifecycle over real HTTP** (``TestLifecycleOverRealHttp``, ``TestDeliveryFailures``):
  acknowledgement, escalation, silences, retries and dead-lettering need seconds to minutes
  of alert time, so the engine and the delivery loop run with an explicit clock (stepped by
  the test) over a real store, while every delivery is a real HTTP request to the real
  Alertmanager or to the webhook server below. Alert time starts a minute before the real
  "now" because Alertmanager compares ``endsAt`` with its own clock.
* The webhook server (``hook``) is aiohttp and verifies each request's HMAC signature over
  the raw body before recording it (a bad signature gets 401). The SMTP relay (``relay``) is
  aiosmtpd with STARTTLS required, using a throw-away CA; the receiver verifies it with
  ``ca_file``. (It may later be replaced by a real Dovecot mailbox.)

Every alert is about messages whose subject names a person and a case reference: neither,
nor any local part of an address, may reach Alertmanager, the uncleared webhook, an email
subject, or a log line at info level or above.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller

from mailwatch.alerting.lifecycle import AlertKey, Silence, Timing
from mailwatch.alerting.rules import AlertRule, ClassView, Condition, Item, Situation
from mailwatch.app.alert_engine import AlertEngine
from mailwatch.app.delivery import DEAD_LETTER_AFTER, DeliveryLoop, PassReport
from mailwatch.config.alerts import (
    AlertmanagerReceiverConfig,
    EmailReceiverConfig,
    ReceiverConfig,
    WebhookReceiverConfig,
)
from mailwatch.config.fields import SecretRef
from mailwatch.config.settings import Settings, load
from mailwatch.core.model import Priority
from mailwatch.errors import ReceiverMisconfigured, ReceiverUnavailable
from mailwatch.notify.alertmanager import AlertmanagerResender
from mailwatch.notify.email import EmailReceiver
from mailwatch.notify.factory import build_receivers
from mailwatch.notify.webhook import SIGNATURE_HEADER, WebhookReceiver
from mailwatch.sandbox.alertmanager import PrivateAlertmanager
from mailwatch.sandbox.dovecot import make_certificates
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.store import Store
from mailwatch.web.runner import run_service

pytestmark = pytest.mark.alertmanager

T = TypeVar("T")
SUBJECT = "Emergency recall - J Bloggs CRN X765432"
OTHER_SUBJECT = "Safeguarding referral - A Nother"
PERSONAL = ["J Bloggs", "X765432", "A Nother", "Emergency recall", "Safeguarding referral",
            "ppcs@", "om@probation.example"]  # fmt: skip
HOOK_SECRET = "correct horse battery staple"
SLA, INTERVAL = 1.0, 1.0
"""Seconds: ``stuck_after`` of the test classes and the probe interval."""


# ---------------------------------------------------------------------------------------------
# Receivers the tests run: Alertmanager's own notifications, the webhook, the SMTP relay.


class _NoticeHandler(BaseHTTPRequestHandler):
    """Records the JSON bodies Alertmanager posts (its webhook notifications)."""

    server: _NoticeServer

    def do_POST(self) -> None:
        """Record one notification."""
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        with self.server.lock:
            self.server.notices.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _NoticeServer(ThreadingHTTPServer):
    """Alertmanager's webhook target; ``notices`` are its notification bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NoticeHandler)
        self.lock = threading.Lock()
        self.notices: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """Where Alertmanager posts."""
        return f"http://127.0.0.1:{self.server_address[1]}/alertmanager"

    def alerts(self, source: str, status: str) -> list[dict[str, Any]]:
        """Alerts with ``source`` that Alertmanager notified with ``status``."""
        with self.lock:
            return [a for n in self.notices for a in n.get("alerts", [])
                    if a["labels"].get("source") == source and a["status"] == status]  # fmt: skip


@dataclass
class Hooked:
    """One request the webhook server accepted."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]

    @property
    def kind(self) -> str:
        """The notification kind."""
        return str(self.payload["kind"])


class HookServer:
    """An aiohttp webhook receiver that verifies the HMAC signature of every request.

    Answers ``status`` (after ``delay`` seconds); a missing or wrong signature gets 401 and
    is counted in ``bad_signatures``, not recorded.
    """

    def __init__(self, secret: str, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.tls = tls
        self.status = 200
        self.delay = 0.0
        self.received: list[Hooked] = []
        self.attempts = 0
        self.bad_signatures = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=2)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self.tls).start()

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def kinds(self, path: str) -> list[str]:
        """Kinds of the notifications accepted on ``path``, in order."""
        return [h.kind for h in self.received if h.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.delay:
            await asyncio.sleep(self.delay)
        if 200 <= self.status < 300:
            self.received.append(
                Hooked(request.path, dict(request.headers), body, json.loads(body))
            )
        return web.Response(status=self.status)

    async def close(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()


class _RelayHandler:
    """aiosmtpd handler: keeps every message the alert relay accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Accept and keep the message."""
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 2.0.0 Ok: queued as 4ALERT1"


@dataclass
class Relay:
    """The alert relay: SMTP on ``port``, STARTTLS with a certificate signed by ``ca_file``."""

    port: int
    ca_file: Path
    handler: _RelayHandler


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


# ---------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(name="am_notices", scope="session")
def fixture_am_notices() -> Iterator[_NoticeServer]:
    """A webhook target for Alertmanager's own notifications, for the whole session."""
    server = _NoticeServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(name="alertmanager", scope="session")
def fixture_alertmanager(
    tmp_path_factory: pytest.TempPathFactory, am_notices: _NoticeServer
) -> Iterator[PrivateAlertmanager]:
    """A real Alertmanager on loopback for the session, notifying ``am_notices``."""
    instance = PrivateAlertmanager.create(
        tmp_path_factory.mktemp("alertmanager"), notify_url=am_notices.url
    )
    instance.check_config()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(name="certificates", scope="session")
def fixture_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Certificates for the TLS receivers (one CA for the session)."""
    ca, cert, key = make_certificates(tmp_path_factory.mktemp("tls"))
    return Certificates(ca, cert, key)


@pytest.fixture(name="secret_file")
def fixture_secret_file(tmp_path: Path) -> Path:
    """The webhook's HMAC secret, in a file (as ``hmac_secret = { file = … }`` reads it)."""
    path = tmp_path / "hook.secret"
    path.write_text(HOOK_SECRET + "\n")
    return path


@pytest.fixture(name="hook")
async def fixture_hook() -> AsyncIterator[HookServer]:
    """The webhook receiver (plain HTTP), verifying signatures with ``HOOK_SECRET``."""
    server = HookServer(HOOK_SECRET)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture(name="relay")
def fixture_relay(certificates: Certificates) -> Iterator[Relay]:
    """The alert relay: aiosmtpd on loopback, STARTTLS required."""
    handler = _RelayHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port,
                            tls_context=certificates.server_context(),
                            require_starttls=True)  # fmt: skip
    controller.start()
    try:
        yield Relay(port, certificates.ca, handler)
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------------------
# Helpers for the end-to-end tests.


async def eventually(check: Callable[[], T], within: float, what: str, every: float = 0.1) -> T:
    """Call ``check`` in a thread until it returns something truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(every)


def write_settings(
    tmp_path: Path, postfix: PrivatePostfix, source: str, receivers: str, rule: str
) -> Settings:
    """A config watching the test Postfix as ``source`` every second; P1 stuck after 1 s."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f"""
[store]
path = "mw.db"
[http]
listen = "127.0.0.1:{free_port()}"
[sources.{source}]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "{INTERVAL:g}s"
[classes.recall_emergency]
priority = "P1"
stuck_after = "{SLA:g}s"
[[classes.recall_emergency.match]]
subject = 'emergency\\s+recall'
[classes.safeguarding]
priority = "P1"
stuck_after = "{SLA:g}s"
[[classes.safeguarding.match]]
subject = 'safeguarding'
{receivers}
[[alerts]]
name = "p1_stuck"
condition = "stuck"
priorities = ["P1"]
runbook_url = "https://runbooks.example/mailwatch#p1"
{rule}
"""
    )
    return load(config)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[None]:
    """``mailwatch run`` in the test's event loop; stopped (cleanly) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


def outbox_rows(settings: Settings) -> list[tuple[str, str, int, str | None]]:
    """``(receiver, kind, attempts, last_error)`` of each outbox row, read-only."""
    uri = f"file:{settings.store.path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        rows = db.execute("SELECT receiver, kind, attempts, last_error FROM outbox ORDER BY id")
        return [(r, k, int(a), e) for r, k, a, e in rows]


@contextlib.contextmanager
def sink_open(postfix: PrivatePostfix) -> Iterator[None]:
    """An SMTP sink on the Postfix relay port: deferred mail can now be delivered."""

    class _Sink:
        async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
            return "250 OK"

    controller = Controller(_Sink(), hostname="127.0.0.1", port=postfix.relay_port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def assert_no_personal_data(text: str) -> None:
    """None of the planted subjects, names, references or local parts appear in ``text``."""
    for secret in PERSONAL:
        assert secret not in text, secret


# ---------------------------------------------------------------------------------------------
# End to end: the real Postfix, the service, the real receivers.


@pytest.mark.postfix
class TestAlertmanagerEndToEnd:
    """A stuck P1 message shows in Alertmanager, resolves there, and survives its outage."""

    async def test_p1_alert_fires_and_resolves(
        self,
        tmp_path: Path,
        postfix: PrivatePostfix,
        alertmanager: PrivateAlertmanager,
        am_notices: _NoticeServer,
    ) -> None:
        """Visible within one probe interval after the SLA, labelled, subject-free; resolves."""
        receivers = f"""
[receivers.duty_am]
type = "alertmanager"
urls = ["{alertmanager.url}"]
resend_every = 1.0
include_subjects = true
"""
        settings = write_settings(tmp_path, postfix, "mta_e2e", receivers,
                                  'receivers = ["duty_am"]')  # fmt: skip
        matcher = 'source="mta_e2e"'
        async with serving(settings):
            await asyncio.to_thread(postfix.inject, [make_message(SUBJECT)])
            injected = time.monotonic()
            found = await eventually(lambda: alertmanager.alerts(matcher), 10, "alert in AM")
            elapsed = time.monotonic() - injected
            # SLA + one probe interval (+10 % jitter) + delivery; Postfix's arrival_time is
            # whole seconds, so a message can look up to 1 s older than it is: never later.
            assert elapsed <= SLA + INTERVAL * 1.1 + 1.0, elapsed
            (alert,) = found
            assert alert["labels"] == {"alertname": "p1_stuck", "class": "recall_emergency",
                                       "priority": "P1", "source": "mta_e2e",
                                       "severity": "page"}  # fmt: skip
            assert alert["annotations"]["summary"].startswith("1 recall_emergency (P1)")
            assert alert["annotations"]["runbook_url"].endswith("#p1")
            assert alert["status"]["state"] == "active"
            assert_no_personal_data(json.dumps(alert))
            ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
            assert ends > datetime.now(UTC) + timedelta(seconds=2)  # now + 4 x resend_every

            def resent() -> bool:
                (again,) = alertmanager.alerts(matcher)
                return bool(again["updatedAt"] > alert["updatedAt"]
                            and again["endsAt"] > alert["endsAt"])  # fmt: skip

            await eventually(resent, 10, "the re-send loop refreshed endsAt")

            with sink_open(postfix):
                await asyncio.to_thread(postfix.flush)
                await asyncio.to_thread(postfix.wait_for_queue, 0)
            await eventually(lambda: not alertmanager.alerts(matcher), 10, "alert resolved")
            (resolved,) = await eventually(
                lambda: am_notices.alerts("mta_e2e", "resolved"), 10, "AM notified resolved"
            )
        ends = datetime.fromisoformat(resolved["endsAt"].replace("Z", "+00:00"))
        assert ends < datetime.now(UTC)
        assert am_notices.alerts("mta_e2e", "firing")
        assert_no_personal_data(json.dumps(am_notices.notices))

    async def test_outage_queues_in_outbox_then_delivers(
        self, tmp_path: Path, postfix: PrivatePostfix
    ) -> None:
        """Alertmanager stopped: notifications wait in the outbox; started: all delivered."""
        down = PrivateAlertmanager.create(tmp_path / "am")
        down.start()
        down.stop()
        receivers = f"""
[receivers.duty_am]
type = "alertmanager"
urls = ["{down.url}"]
resend_every = 60.0
"""
        # resend_every 60: within this test only the outbox can deliver.
        settings = write_settings(tmp_path, postfix, "mta_outage", receivers,
                                  'receivers = ["duty_am"]')  # fmt: skip
        try:
            async with serving(settings):
                await asyncio.to_thread(
                    postfix.inject, [make_message(SUBJECT), make_message(OTHER_SUBJECT)]
                )

                def queued_and_failed() -> list[tuple[str, str, int, str | None]]:
                    rows = outbox_rows(settings)
                    return rows if len(rows) == 2 and rows[0][3] else []

                rows = await eventually(
                    queued_and_failed, 10, "two notifications queued, the first attempt failed"
                )
                assert [(r[0], r[1]) for r in rows] == [("duty_am", "firing")] * 2
                assert "Connect" in (rows[0][3] or "") or "refused" in (rows[0][3] or "")
                await asyncio.to_thread(down.start)

                def both_alerts() -> list[dict[str, Any]]:
                    alerts = down.alerts('source="mta_outage"')
                    return alerts if len(alerts) == 2 else []

                # The backed-off retry comes 5 s ±20 % after the failure (10 s ±20 % after a
                # second one): 20 s is ample, and the test usually takes ~4 s here.
                found = await eventually(both_alerts, 20, "both alerts delivered after the outage")
                assert {a["labels"]["class"] for a in found} == {"recall_emergency",
                                                                  "safeguarding"}  # fmt: skip
                await eventually(lambda: outbox_rows(settings) == [], 20, "outbox empty")
        finally:
            down.stop()


@pytest.mark.postfix
class TestWebhookAndEmailEndToEnd:
    """The signed webhook and the alert email, across a restart of mailwatch."""

    async def test_restart_sends_no_duplicate_before_repeat(
        self,
        tmp_path: Path,
        postfix: PrivatePostfix,
        hook: HookServer,
        relay: Relay,
        secret_file: Path,
    ) -> None:
        """Firing once; a restart sends nothing new; the repeat comes after repeat_every."""
        receivers = f"""
[receivers.duty_hook]
type = "webhook"
url = "{hook.url("/duty")}"
hmac_secret = {{ file = "{secret_file}" }}
timeout = 5.0
[receivers.duty_mail]
type = "email"
host = "127.0.0.1"
port = {relay.port}
security = "starttls"
ca_file = "{relay.ca_file}"
sender = "mailwatch@probation.example"
to = ["duty-managers@probation.example"]
timeout = 5.0
"""
        repeat = 5.0
        rule = f'receivers = ["duty_hook", "duty_mail"]\nrepeat_every = "{repeat:g}s"'
        settings = write_settings(tmp_path, postfix, "mta_restart", receivers, rule)
        mails = relay.handler.messages
        async with serving(settings):
            await asyncio.to_thread(postfix.inject, [make_message(SUBJECT)])
            await eventually(lambda: hook.received and mails, 10, "webhook and email")
            fired = time.monotonic()
        async with serving(settings):
            await asyncio.sleep(max(0.0, fired + repeat - 1.0 - time.monotonic()))
            assert hook.kinds("/duty") == ["firing"]
            assert len(mails) == 1
            await eventually(lambda: len(hook.received) == 2 and len(mails) == 2,
                             repeat, "the repeat")  # fmt: skip
        assert hook.kinds("/duty") == ["firing", "repeat"]
        assert hook.bad_signatures == 0
        first = hook.received[0]
        assert first.headers["Content-Type"] == "application/json"
        assert first.payload["version"] == 1
        assert first.payload["alert"]["id"] == "p1_stuck/recall_emergency/mta_restart"
        assert "subjects" not in first.payload["alert"]
        assert_no_personal_data(first.body.decode())
        subjects = [m["Subject"] for m in mails]
        assert subjects[0].startswith("[mailwatch FIRING] 1 recall_emergency (P1) message(s)")
        assert subjects[1].startswith("[mailwatch REPEAT]")
        for message in mails:
            assert_no_personal_data(message.as_string())
        assert relay.handler.recipients[0] == ["duty-managers@probation.example"]


# ---------------------------------------------------------------------------------------------
# The lifecycle over real HTTP, with an explicit clock.


@dataclass
class Clock:
    """Alert time, stepped by the test; it starts a minute before the real now.

    Alertmanager compares ``endsAt`` with its own clock: a firing alert's (alert time +
    4 x 60 s) must be in its future, a resolved one's (alert time) in its past.
    """

    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=1))
    now: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.start

    def __call__(self) -> datetime:
        """The current alert time."""
        return self.now


@dataclass
class Harness:
    """The engine and the delivery loop on a real store, over real receivers."""

    store: Store
    engine: AlertEngine
    delivery: DeliveryLoop
    clock: Clock
    source: str

    @property
    def alert_id(self) -> str:
        """The id of the alert every step is about."""
        return f"p1_stuck/recall_emergency/{self.source}"

    def situation(self, active: bool) -> Situation:
        """One stuck recall (with a personal subject) in ``source``, or none."""
        item = Item("A1B2C3D4E5", 120.0, ("justice.example",),
                    "connect to relay[10.0.0.1]:25: Connection refused", SUBJECT)  # fmt: skip
        view = ClassView(source=self.source, class_name="recall_emergency",
                         priority=Priority.P1, sla_seconds=SLA,
                         oldest_age_seconds=120.0 if active else 0.0,
                         stuck=(item,) if active else ())  # fmt: skip
        return Situation(now=self.clock.now, classes=(view,))

    async def at(self, seconds: float, *, active: bool = True) -> PassReport:
        """Evaluate at ``start + seconds`` and deliver whatever is due then."""
        self.clock.now = self.clock.start + timedelta(seconds=seconds)
        self.engine.evaluate(self.situation(active))
        return await self.delivery.deliver_due()


HarnessFactory = Callable[..., Harness]


@pytest.fixture(name="harness")
def fixture_harness(tmp_path: Path) -> Iterator[HarnessFactory]:
    """Build a :class:`Harness` for a source, receiver configs and rule timing."""
    stores: list[Store] = []

    def build(
        source: str,
        receivers: dict[str, ReceiverConfig],
        timing: Timing,
        **delivery: Any,
    ) -> Harness:
        store = Store(tmp_path / f"{source}.db")
        stores.append(store)
        clock = Clock()
        rule = AlertRule(name="p1_stuck", condition=Condition.STUCK, severity="page",
                         priorities=(Priority.P1,), timing=timing,
                         runbook_url="https://runbooks.example/mailwatch#p1")  # fmt: skip
        engine = AlertEngine([rule], {n: r.include_subjects for n, r in receivers.items()},
                             {"recall_emergency": Priority.P1}, store)  # fmt: skip
        loop = DeliveryLoop(store, build_receivers(receivers, clock), clock, lambda: 0.5,
                            **delivery)  # fmt: skip
        return Harness(store, engine, loop, clock, source)

    yield build
    for store in stores:
        store.close()


def _hook_config(
    hook: HookServer, path: str, secret_file: Path, **kw: Any
) -> WebhookReceiverConfig:
    return WebhookReceiverConfig(type="webhook", url=hook.url(path),
                                 hmac_secret=SecretRef(file=secret_file), **kw)  # fmt: skip


def _am_config(*urls: str) -> AlertmanagerReceiverConfig:
    return AlertmanagerReceiverConfig(type="alertmanager", urls=list(urls), include_subjects=True)


def _logged(
    entries: Sequence[MutableMapping[str, Any]], event: str
) -> list[MutableMapping[str, Any]]:
    return [e for e in entries if e["event"] == event]


class TestLifecycleOverRealHttp:
    """Acknowledgement, escalation and silences, delivered to the real receivers."""

    async def test_ack_stops_repeats_and_shows_in_alertmanager(
        self,
        harness: HarnessFactory,
        hook: HookServer,
        secret_file: Path,
        alertmanager: PrivateAlertmanager,
    ) -> None:
        """Repeats stop at the ack; Alertmanager keeps the alert, annotated; resolve clears it."""
        receivers: dict[str, ReceiverConfig] = {
            "duty_hook": _hook_config(hook, "/duty", secret_file, include_subjects=True),
            "ops_hook": _hook_config(hook, "/ops", secret_file),
            "duty_am": _am_config(alertmanager.url),
        }
        timing = Timing(receivers=("duty_hook", "duty_am"), repeat_every=timedelta(seconds=2),
                        escalate_after=timedelta(seconds=3), escalate_to=("ops_hook",))  # fmt: skip
        h = harness("lab_ack", receivers, timing)
        matcher = 'source="lab_ack"'
        with structlog.testing.capture_logs() as logs:
            assert (await h.at(0)).delivered == 2
            assert (await h.at(2)).delivered == 2
            h.engine.acknowledge(h.alert_id, "duty.manager.smith", "calling the MTA team",
                                 h.clock.start + timedelta(seconds=2.5))  # fmt: skip
            for second in (3, 4, 6, 8):
                assert (await h.at(second)).delivered == 0
            assert hook.kinds("/duty") == ["firing", "repeat"]
            resender = AlertmanagerResender(
                h.store, h.delivery.receivers, list(h.engine.rules.values()),
                h.engine.priorities, h.clock,
            )  # fmt: skip
            assert await resender.resend_once("duty_am") == 1
            (alert,) = alertmanager.alerts(matcher)
            assert alert["annotations"]["acknowledged_by"] == "duty.manager.smith"
            assert alert["status"]["state"] == "active"
            assert_no_personal_data(json.dumps(alert))
            assert (await h.at(9, active=False)).delivered == 2
        assert hook.kinds("/duty") == ["firing", "repeat", "resolved"]
        assert hook.kinds("/ops") == []  # acknowledged before escalate_after
        assert alertmanager.alerts(matcher) == []
        assert hook.received[0].payload["alert"]["subjects"] == [SUBJECT]  # a cleared receiver
        for entry in logs:
            if entry["log_level"] != "debug":
                assert_no_personal_data(json.dumps(entry, default=str))

    async def test_escalation_after_its_delay_unless_acked(
        self, harness: HarnessFactory, hook: HookServer, secret_file: Path
    ) -> None:
        """Unacknowledged for 3 s: the escalation receiver is told once, then gets repeats."""
        receivers: dict[str, ReceiverConfig] = {
            "duty_hook": _hook_config(hook, "/duty", secret_file),
            "ops_hook": _hook_config(hook, "/ops", secret_file),
        }
        timing = Timing(receivers=("duty_hook",), repeat_every=timedelta(seconds=2),
                        escalate_after=timedelta(seconds=3), escalate_to=("ops_hook",))  # fmt: skip
        h = harness("lab_escalate", receivers, timing)
        for second in (0, 1, 2, 2.9):
            await h.at(second)
        assert hook.kinds("/ops") == []
        await h.at(3)
        assert hook.kinds("/ops") == ["escalation"]
        await h.at(5)
        assert hook.kinds("/duty") == ["firing", "repeat", "repeat"]
        assert hook.kinds("/ops") == ["escalation", "repeat"]
        assert_no_personal_data(b"".join(x.body for x in hook.received).decode())

    async def test_silence_suppresses_then_expires(
        self,
        harness: HarnessFactory,
        hook: HookServer,
        secret_file: Path,
        alertmanager: PrivateAlertmanager,
    ) -> None:
        """Nothing is sent while a 3 s silence lasts; the firing goes out when it ends."""
        receivers: dict[str, ReceiverConfig] = {
            "duty_hook": _hook_config(hook, "/duty", secret_file),
            "duty_am": _am_config(alertmanager.url),
        }
        h = harness("lab_silence", receivers, Timing(receivers=("duty_hook", "duty_am")))
        start = h.clock.start
        h.store.add_silence(Silence(0, "recall_emergency", "lab_silence", start,
                                    start + timedelta(seconds=3), "planned MTA work",
                                    "duty.manager.smith"))  # fmt: skip
        for second in (0, 1, 2, 2.9):
            assert (await h.at(second)).delivered == 0
        assert hook.received == []
        assert alertmanager.alerts('source="lab_silence"') == []
        assert (await h.at(3)).delivered == 2
        assert hook.kinds("/duty") == ["firing"]
        assert len(alertmanager.alerts('source="lab_silence"')) == 1


class TestDeliveryFailures:
    """Retries, partial failures, dead letters, unknown receivers and TLS, over real sockets."""

    async def test_partial_alertmanager_failure_retries_until_all_have_it(
        self, harness: HarnessFactory, alertmanager: PrivateAlertmanager, tmp_path: Path
    ) -> None:
        """One of two Alertmanagers down: the row stays; once both accept, it is removed."""
        second = PrivateAlertmanager.create(tmp_path / "am2")
        h = harness("lab_ha", {"duty_am": _am_config(alertmanager.url, second.url)},
                    Timing(receivers=("duty_am",)))  # fmt: skip
        try:
            report = await h.at(0)
            assert (report.delivered, report.failed) == (0, 1)
            assert len(alertmanager.alerts('source="lab_ha"')) == 1
            (row,) = h.store.outbox_due(h.clock.now + timedelta(minutes=10))
            assert row.attempts == 1
            assert "1 of 2 failed" in (row.last_error or "")
            await asyncio.to_thread(second.start)
            assert (await h.at(4)).delivered == 0  # still backing off (5 s, no jitter)
            assert (await h.at(5.1)).delivered == 1
            assert h.store.outbox_pending() == 0
            assert len(second.alerts('source="lab_ha"')) == 1
        finally:
            second.stop()

    async def test_server_errors_and_timeouts_are_retried(
        self, harness: HarnessFactory, hook: HookServer, secret_file: Path
    ) -> None:
        """503 and a timeout back the receiver off; the notification arrives once it answers."""
        config = _hook_config(hook, "/duty", secret_file, timeout=0.3)
        h = harness("lab_retry", {"duty_hook": config}, Timing(receivers=("duty_hook",)))
        hook.status = 503
        assert (await h.at(0)).failed == 1
        hook.status, hook.delay = 200, 1.0
        assert (await h.at(6)).failed == 1
        (row,) = h.store.outbox_due(h.clock.now + timedelta(hours=1))
        assert row.attempts == 2
        assert "did not answer within 0.3s" in (row.last_error or "")
        hook.delay = 0.0
        assert (await h.at(17)).delivered == 1
        assert hook.kinds("/duty")[-1] == "firing"
        assert h.store.outbox_pending() == 0

    async def test_permanent_rejection_is_dead_lettered(
        self, harness: HarnessFactory, hook: HookServer, secret_file: Path
    ) -> None:
        """A 400 is retried a few times, then dropped to the audit trail with an error log."""
        config = _hook_config(hook, "/duty", secret_file)
        h = harness("lab_reject", {"duty_hook": config}, Timing(receivers=("duty_hook",)))
        hook.status = 400
        with structlog.testing.capture_logs() as logs:
            for attempt in range(DEAD_LETTER_AFTER):
                await h.at(attempt * 400)
        assert hook.attempts == DEAD_LETTER_AFTER
        assert h.store.outbox_pending() == 0
        (dead,) = _logged(logs, "notification_dead_lettered")
        assert dead["log_level"] == "error"
        assert dead["status"] == 400
        assert len(_logged(logs, "notification_rejected")) == DEAD_LETTER_AFTER - 1
        audit = [r for r in h.store.audit_trail() if r.action == "dead_letter"]
        assert len(audit) == 1
        assert "HTTP 400" in (audit[0].detail or "")

    async def test_unknown_receiver_is_dropped_with_an_error(
        self, harness: HarnessFactory, hook: HookServer, secret_file: Path
    ) -> None:
        """A row for a receiver no longer configured is removed, logged and audited."""
        h = harness("lab_gone", {"duty_hook": _hook_config(hook, "/duty", secret_file)},
                    Timing(receivers=("duty_hook",)))  # fmt: skip
        key = AlertKey("p1_stuck", "recall_emergency", "lab_gone")
        h.store.save_alerts([], [(key, "retired_pager", "firing", {"version": 1})], h.clock.now)
        with structlog.testing.capture_logs() as logs:
            report = await h.delivery.deliver_due()
        assert report.dropped == 1
        assert h.store.outbox_pending() == 0
        (entry,) = _logged(logs, "notification_dropped")
        assert entry["log_level"] == "error"
        assert entry["receiver"] == "retired_pager"
        assert any(r.action == "drop_notification" for r in h.store.audit_trail())

    async def test_webhook_tls_is_verified(
        self, certificates: Certificates, secret_file: Path
    ) -> None:
        """HTTPS to an unknown CA fails; with ca_file the signed POST is delivered."""
        server = HookServer(HOOK_SECRET, tls=certificates.server_context())
        await server.start()
        try:
            payload = {"version": 1, "kind": "firing", "alert": {"id": "x"}}
            untrusting = WebhookReceiver("hook", _hook_config(server, "/duty", secret_file))
            with pytest.raises(ReceiverUnavailable, match="TLS"):
                await untrusting.send(payload)
            trusting = WebhookReceiver(
                "hook", _hook_config(server, "/duty", secret_file, ca_file=certificates.ca)
            )
            await trusting.send(payload)
            assert [h.payload for h in server.received] == [payload]
        finally:
            await server.close()

    async def test_email_refuses_a_relay_without_starttls(
        self, relay: Relay, certificates: Certificates
    ) -> None:
        """No STARTTLS offered: nothing is sent in clear; an untrusted certificate fails."""
        plain = _RelayHandler()
        port = free_port()
        controller = Controller(plain, hostname="127.0.0.1", port=port)
        controller.start()
        payload = {"version": 1, "kind": "firing", "sent_at": "now",
                   "alert": {"id": "x", "summary": "1 recall_emergency (P1) stuck"}}  # fmt: skip
        base: dict[str, Any] = {"type": "email", "host": "127.0.0.1", "timeout": 5.0,
                                "sender": "mailwatch@probation.example",
                                "to": ["duty-managers@probation.example"]}  # fmt: skip
        try:
            receiver = EmailReceiver("mail", EmailReceiverConfig(**(base | {"port": port})))
            with pytest.raises(ReceiverMisconfigured, match="STARTTLS"):
                await receiver.send(payload)
            assert plain.messages == []
        finally:
            controller.stop()
        untrusting = EmailReceiver("mail", EmailReceiverConfig(**(base | {"port": relay.port})))
        with pytest.raises(ReceiverUnavailable, match="TLS"):
            await untrusting.send(payload)
        assert relay.handler.messages == []
