"""The shipped Alertmanager config in a real Alertmanager: one alert, one notification.

A site that lets Prometheus evaluate ``deploy/prometheus/mailwatch.rules.yml`` *and* lets
mailwatch push its own alerts to the same Alertmanager would tell the duty managers everything
twice. ``deploy/alertmanager/alertmanager.yml`` carries inhibit rules (generated from
``mailwatch/config/alerts.toml``) by which mailwatch's pushed alert mutes the Prometheus alerts
for the same class, priority and source. Here the real Alertmanager runs that file (its webhook
URLs pointed at a recorder, its group timings shortened), mailwatch's alert is built by
mailwatch's own ``to_alert`` from its default rule, and the Prometheus alerts carry the labels
the rules produce (as the promtool unit tests in ``deploy/prometheus/tests`` assert). The same
Prometheus alerts for another source, with no pushed alert, are the control: they do notify.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mailwatch.config.alerts import default_rules
from mailwatch.notify.alertmanager import to_alert
from mailwatch.sandbox.alertmanager import PrivateAlertmanager

pytestmark = pytest.mark.alertmanager

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
SCRAPE = {"job": "mailwatch", "instance": "127.0.0.1:9745"}


class _Recorder(BaseHTTPRequestHandler):
    server: _Notices

    def do_POST(self) -> None:
        """Record one notification with the receiver path it was posted to."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            self.server.notices.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Notices(ThreadingHTTPServer):
    """What Alertmanager notified, by receiver path (``/alerts/duty-managers``, ``/alerts/ops``)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.lock = threading.Lock()
        self.notices: list[tuple[str, dict[str, Any]]] = []

    @property
    def base(self) -> str:
        """Scheme, host and port of the recorder."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def alertnames(self, source: str) -> set[tuple[str, str]]:
        """(receiver path, alertname) of every firing alert with ``source`` notified so far."""
        with self.lock:
            return {(path, a["labels"]["alertname"]) for path, body in self.notices
                    for a in body["alerts"]
                    if a["labels"].get("source") == source and a["status"] == "firing"}  # fmt: skip


def eventually(check: Callable[[], T], within: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.1)
    return result


def shipped_config(notices: str) -> dict[str, Any]:
    """The shipped alertmanager.yml, its webhooks aimed at the recorder, its timings short."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook["url"].replace("http://127.0.0.1:5001", notices)
    stack = [config["route"]]
    while stack:
        route = stack.pop()
        route.update({key: "1s" for key in ("group_wait", "group_interval") if key in route})
        stack += route.get("routes", [])
    return config


@pytest.fixture(name="notices", scope="module")
def fixture_notices() -> Iterator[_Notices]:
    """The recorder Alertmanager's webhooks post to."""
    server = _Notices()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(name="shipped_alertmanager", scope="module")
def fixture_shipped_alertmanager(
    tmp_path_factory: pytest.TempPathFactory, notices: _Notices
) -> Iterator[PrivateAlertmanager]:
    """A real Alertmanager running the shipped alertmanager.yml."""
    instance = PrivateAlertmanager.create(tmp_path_factory.mktemp("am-shipped"))
    instance.config_path.write_text(json.dumps(shipped_config(notices.base), indent=2))
    instance.check_config()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def post(alertmanager: PrivateAlertmanager, alerts: list[dict[str, Any]]) -> None:
    """``POST /api/v2/alerts``."""
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL built here)
        f"{alertmanager.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def pushed(rule_name: str, source: str, class_name: str = "", priority: str = "") -> dict[str, Any]:
    """The alert mailwatch pushes for its default rule ``rule_name`` (its own ``to_alert``)."""
    (rule,) = [r for r in default_rules() if r.name == rule_name]
    now = datetime.now(UTC)
    payload: Any = {
        "version": 1, "kind": "firing", "sent_at": now.isoformat(),
        "alert": {"rule": rule.name, "class": class_name, "source": source,
                  "priority": priority, "severity": rule.severity, "status": "firing",
                  "summary": f"{rule.name} on {source}", "description": "",
                  "fired_at": now.isoformat()},
    }  # fmt: skip
    return to_alert(payload, now, resend_every=60.0)


def scraped(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    """A Prometheus alert as the generated rules label it (job and instance included)."""
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alertname, "severity": severity, **SCRAPE, **labels},
        "annotations": {"summary": alertname},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


CASES: dict[str, tuple[Callable[[str], dict[str, Any]], Callable[[str], list[dict[str, Any]]]]]
CASES = {
    "p1_stuck": (
        lambda s: pushed("p1_stuck", s, "recall_emergency", "P1"),
        lambda s: [
            scraped("MailwatchP1Stuck", "page", source=s, **{"class": "recall_emergency"},
                    priority="P1"),
            scraped("MailwatchOldestOverSLA", "page", source=s, **{"class": "recall_emergency"},
                    priority="P1", sla="10m"),
        ],
    ),
    "undeliverable": (
        lambda s: pushed("undeliverable", s, "recall_standard", "P1"),
        lambda s: [scraped("MailwatchBounces", "page", source=s,
                           **{"class": "recall_standard"}, priority="P1")],
    ),
    "source_blind": (
        lambda s: pushed("source_blind", s),
        lambda s: [scraped("MailwatchBlind", "page", source=s, reason="no_success_for_10m"),
                   scraped("MailwatchProbeDown", "ticket", source=s)],
    ),
    "canary_lost": (
        lambda s: pushed("canary_lost", s),
        lambda s: [scraped("MailwatchCanaryLost", "ticket", source=s, path=s)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_pushed_alert_mutes_the_prometheus_alerts_for_the_same_problem(
    case: str, shipped_alertmanager: PrivateAlertmanager, notices: _Notices
) -> None:
    """Both paths fire for one source: one notification (mailwatch's); the control notifies."""
    make_pushed, make_scraped = CASES[case]
    source, control = f"{case}-src", f"{case}-control"
    mine = make_pushed(source)
    post(shipped_alertmanager, [mine])
    eventually(lambda: shipped_alertmanager.alerts(f'source="{source}"'), 10, "pushed alert")
    post(shipped_alertmanager, make_scraped(source))
    post(shipped_alertmanager, make_scraped(control))
    # The control is told of the first Prometheus alert of each case (the others may be muted
    # by Prometheus-only inhibitions: MailwatchP1Stuck mutes MailwatchOldestOverSLA).
    expected = {make_scraped(control)[0]["labels"]["alertname"]}

    def control_notified() -> bool:
        return expected <= {name for _, name in notices.alertnames(control)}

    eventually(control_notified, 15, "the control's Prometheus alerts notified")
    eventually(lambda: notices.alertnames(source), 15, "mailwatch's alert notified")

    for alert in shipped_alertmanager.alerts(f'source="{source}"'):
        name = alert["labels"]["alertname"]
        if name == mine["labels"]["alertname"]:
            assert alert["status"]["state"] == "active"
        else:
            assert alert["status"]["state"] == "suppressed", name
            assert alert["status"]["inhibitedBy"], name
    assert {name for _, name in notices.alertnames(source)} == {case}
