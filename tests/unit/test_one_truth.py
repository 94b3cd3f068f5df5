"""One truth: every interface asks the same judgement and they agree (issue 11, items 5 and 6).

One set of messages (queued over its SLA, held, bounced P1, expired, sent, a MAPPA level-3
message raised to P1 in the P2 class ``mappa`` both waiting and bounced, one not yet due) goes
through the service and then through every interface: ``mailwatch stuck``, ``show`` and
``check`` (Nagios), ``GET /api/v1/messages`` (paged), the status page's summary, the metrics,
and the alert situation and engine. Each must say the same thing about which messages are
stuck, with which priority.

The queue source is a fake (``FakeQueueSource``): what is tested here is what happens after a
probe; real Postfix probes are tested in tests/integration. Outcomes are recorded through the
store's public API, as the mail-log source does.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from mailwatch.alerting.lifecycle import AlertKey, AlertStatus
from mailwatch.app.service import Service
from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.core.model import (
    Delivery,
    DeliveryStatus,
    Message,
    Priority,
    QueueObservation,
    Recipient,
)
from mailwatch.store import Store
from mailwatch.web import api, statuspage
from mailwatch.web.metrics import MailwatchCollector

TOKEN = "one-truth-read-token"
NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)


@dataclass
class FakeQueueSource:
    """A fake Postfix source: returns the messages it is given, observed at ``NOW``."""

    name: str
    messages: list[Message] = field(default_factory=list)

    async def probe(self) -> QueueObservation:
        """Everything it holds, as one observation."""
        return QueueObservation(self.name, NOW, tuple(self.messages))


def _message(queue_id: str, queue: str, age: timedelta, subject: str) -> Message:
    arrival = NOW - age
    return Message(
        f"mta1/{queue_id}/{int(arrival.timestamp())}", "mta1", queue_id, queue, arrival, 1000,
        "sender@probation.example", (Recipient("ppcs@justice.example"),), subject=subject,
    )  # fmt: skip


WAITING = [
    _message("A0OVERSLA", "deferred", 30 * MIN, "Emergency recall - A Person"),
    _message("B0NOTDUE", "deferred", 1 * MIN, "Emergency recall - B Person"),
    _message("C0MAPPA3", "deferred", 180 * MIN, "MAPPA level 3 meeting minutes"),
    _message("D0HELD", "hold", 300 * MIN, "MAPPA panel notes"),
]
LEAVING = [
    _message("E0BOUNCED", "deferred", 20 * MIN, "Part A recall report"),
    _message("F0EXPIRED", "deferred", 90 * MIN, "Case allocation to NPS"),
    _message("G0SENT", "deferred", 20 * MIN, "Team lunch"),
    _message("H0MAPPA3B", "deferred", 20 * MIN, "MAPPA level 3 referral"),
]
OUTCOMES = {
    "E0BOUNCED": DeliveryStatus.BOUNCED,
    "F0EXPIRED": DeliveryStatus.EXPIRED,
    "G0SENT": DeliveryStatus.SENT,
    "H0MAPPA3B": DeliveryStatus.BOUNCED,
}
STUCK = {"A0OVERSLA", "C0MAPPA3", "D0HELD", "E0BOUNCED", "F0EXPIRED", "H0MAPPA3B"}
"""What the one judgement says is stuck (waiting too long, or not sent)."""
PRIORITY = {"A0OVERSLA": "P1", "B0NOTDUE": "P1", "C0MAPPA3": "P1", "D0HELD": "P2",
            "E0BOUNCED": "P1", "F0EXPIRED": "P2", "G0SENT": "P4", "H0MAPPA3B": "P1"}  # fmt: skip
STATE = {"A0OVERSLA": "deferred", "B0NOTDUE": "deferred", "C0MAPPA3": "deferred",
         "D0HELD": "hold", "E0BOUNCED": "bounced", "F0EXPIRED": "expired", "G0SENT": "sent",
         "H0MAPPA3B": "bounced"}  # fmt: skip
"""The state each interface shows: a message that left shows its outcome, not its queue."""


def _by_class_priority(ids: set[str]) -> dict[tuple[str, str], int]:
    classes = {
        "A0OVERSLA": "recall_emergency",
        "C0MAPPA3": "mappa",
        "D0HELD": "mappa",
        "E0BOUNCED": "recall_standard",
        "F0EXPIRED": "allocation",
        "H0MAPPA3B": "mappa",
    }
    counts: dict[tuple[str, str], int] = {}
    for ident in ids:
        key = (classes[ident], PRIORITY[ident])
        counts[key] = counts.get(key, 0) + 1
    return counts  # fmt: skip


@pytest.fixture(name="settings", scope="module")
def fixture_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A service with one Postfix source and a read token; the scans above recorded."""
    tmp = tmp_path_factory.mktemp("one-truth")
    config = tmp / "mailwatch.toml"
    config.write_text(f"""
[store]
path = "{tmp / "mw.db"}"
[[http.tokens]]
name = "dashboard"
scope = "read"
secret = {{ env = "MW_ONE_TRUTH_TOKEN" }}
[sources.mta1]
type = "postfix"
""")
    return load(config)


@pytest.fixture(name="service", scope="module")
def fixture_service(settings: Settings) -> Any:
    """Scan everything, record the outcomes of the four that leave, scan again."""
    with Store(settings.store.path) as store:
        source = FakeQueueSource("mta1", [*WAITING, *LEAVING])
        service = Service(settings, store, [source], clock=lambda: NOW)
        asyncio.run(service.probe_once(source))
        store.record_outcomes("maillog", "mta1", [
            Delivery(NOW - 5 * MIN, m.queue_id, OUTCOMES[m.queue_id], "ppcs@justice.example",
                     dsn="5.1.1" if OUTCOMES[m.queue_id] is DeliveryStatus.BOUNCED else None,
                     text="user unknown")
            for m in LEAVING
        ], None)  # fmt: skip
        source.messages = list(WAITING)
        asyncio.run(service.probe_once(source))
        yield service


def _cli(settings: Settings, *args: str) -> Any:
    config = Path(str(settings.store.path)).parent / "mailwatch.toml"
    return CliRunner().invoke(cli, ["-c", str(config), *args])


class TestEveryInterfaceAgrees:
    """The same stuck set, priorities and states everywhere."""

    def test_cli_stuck(self, settings: Settings, service: Service) -> None:
        """``stuck`` lists exactly the stuck messages, with the message's priority and state."""
        items = json.loads(_cli(settings, "stuck", "--json").output)
        assert {i["queue_id"] for i in items} == STUCK
        for item in items:
            assert item["priority"] == PRIORITY[item["queue_id"]]
            assert item["queue"] == STATE[item["queue_id"]]
        every = json.loads(_cli(settings, "stuck", "--all", "--json").output)
        assert {i["queue_id"] for i in every} == STUCK | {"B0NOTDUE"}

    @pytest.mark.parametrize("ident", sorted(PRIORITY))
    def test_cli_show(self, settings: Settings, service: Service, ident: str) -> None:
        """``show`` says stuck iff ``stuck`` lists it; one that left shows its outcome."""
        fields = dict(json.loads(_cli(settings, "show", ident, "--json").output))
        assert fields["stuck"].startswith("yes") == (ident in STUCK), fields["stuck"]
        assert fields["queue"].split(" ")[0] == STATE[ident]

    @pytest.mark.parametrize(
        ("args", "count"),
        [((), 6), (("--priority", "P1"), 4), (("--priority", "P2"), 2), (("--priority", "P4"), 0),
         (("--priority", "P1", "--class", "recall_standard"), 1)],
    )  # fmt: skip
    def test_cli_check(
        self, settings: Settings, service: Service, args: tuple[str, ...], count: int
    ) -> None:
        """The Nagios check counts what ``stuck`` lists: a bounced P1 is CRITICAL, not OK."""
        result = _cli(settings, "check", *args)
        assert f" - {count} stuck" in result.output, result.output
        assert result.exit_code == (2 if count else 0), result.output

    def test_api_pages_agree_with_the_cli(
        self, settings: Settings, service: Service, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The API lists the same messages in the same order; pages add up to the whole."""
        monkeypatch.setenv("MW_ONE_TRUTH_TOKEN", TOKEN)
        cli_order = [i["queue_id"] for i in json.loads(_cli(settings, "stuck", "--json").output)]

        async def fetch() -> tuple[list[str], list[str], int]:
            async with TestClient(TestServer(api.build(service, settings))) as client:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                whole = await (await client.get("/api/v1/messages", headers=headers)).json()
                paged: list[str] = []
                for offset in range(0, 8, 4):
                    page = await client.get(
                        "/api/v1/messages", params={"limit": "4", "offset": str(offset)},
                        headers=headers,
                    )  # fmt: skip
                    paged += [i["queue_id"] for i in (await page.json())["items"]]
                return [i["queue_id"] for i in whole["items"]], paged, whole["total"]

        whole, paged, total = asyncio.run(fetch())
        assert whole == cli_order == paged
        assert total == len(STUCK)

    @pytest.mark.parametrize("stuck", ["true", "false"])
    def test_api_cursor_pages_agree_with_the_cli(
        self, settings: Settings, service: Service, monkeypatch: pytest.MonkeyPatch, stuck: str
    ) -> None:
        """Pages by ``cursor`` (keyset paging) add up to the CLI's list; a bad cursor is 400."""
        monkeypatch.setenv("MW_ONE_TRUTH_TOKEN", TOKEN)
        args = ("stuck", "--json") if stuck == "true" else ("stuck", "--all", "--json")
        cli_order = [i["queue_id"] for i in json.loads(_cli(settings, *args).output)]

        async def fetch() -> tuple[list[str], int]:
            async with TestClient(TestServer(api.build(service, settings))) as client:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                paged: list[str] = []
                params = {"limit": "3", "stuck": stuck}
                while True:
                    body = await (await client.get("/api/v1/messages", params=params,
                                                   headers=headers)).json()  # fmt: skip
                    paged += [i["queue_id"] for i in body["items"]]
                    if body["next_cursor"] is None:
                        break
                    params["cursor"] = body["next_cursor"]
                bad = await client.get("/api/v1/messages", params={"cursor": "x!"},
                                       headers=headers)  # fmt: skip
                return paged, bad.status

        paged, bad_status = asyncio.run(fetch())
        assert paged == cli_order
        assert bad_status == 400

    def test_status_page(self, service: Service) -> None:
        """The status page counts the same stuck messages per class and message priority."""
        summary = api.status_summary(service, NOW)
        counts = {(c["class"], c["priority"]): c["stuck"] for c in summary["classes"] if c["stuck"]}
        assert counts == _by_class_priority(STUCK)
        page = statuspage.render(summary)
        p1_section = page[page.index('id="p1"') : page.index('id="others"')]
        assert 'data-class="mappa"' in p1_section  # the level-3 mail is on the P1 tiles

    def test_metrics(self, service: Service) -> None:
        """Stuck plus undeliverable gauges, by message priority, count the same messages."""
        registry = CollectorRegistry()
        registry.register(MailwatchCollector(lambda: service.snapshot))
        counts: dict[tuple[str, str], int] = {}
        for family in registry.collect():
            if family.name not in ("mailwatch_stuck_messages", "mailwatch_undeliverable_messages"):
                continue
            for sample in family.samples:
                if sample.value:
                    key = (sample.labels["class"], sample.labels["priority"])
                    counts[key] = counts.get(key, 0) + int(sample.value)
        assert counts == _by_class_priority(STUCK)
        oldest = registry.get_sample_value
        labels = {"source": "mta1", "class": "mappa"}
        assert oldest("mailwatch_oldest_message_age_seconds", labels | {"priority": "P1"}) == 10800
        assert oldest("mailwatch_oldest_message_age_seconds", labels | {"priority": "P2"}) == 18000

    def test_alert_situation_and_engine(self, service: Service) -> None:
        """The alert rules see the same messages, by message priority: level 3 pages."""
        situation = service.situation()
        seen: dict[tuple[str, str], int] = {}
        for view in situation.classes:
            n = len(view.stuck) + len(view.undeliverable)
            if n:
                key = (view.class_name, str(view.priority))
                seen[key] = seen.get(key, 0) + n
        assert seen == _by_class_priority(STUCK)
        states = service.alerts.states
        page = states[AlertKey("p1_stuck", "mappa", "mta1")]
        assert page.status is AlertStatus.FIRING
        assert page.details.priority is Priority.P1
        assert page.details.ids == ("C0MAPPA3",)
        assert states[AlertKey("p2_stuck", "mappa", "mta1")].details.ids == ("D0HELD",)
        gone = states[AlertKey("undeliverable", "mappa", "mta1")]
        assert (gone.status, gone.details.priority) == (AlertStatus.FIRING, Priority.P1)

    def test_alert_payload_carries_the_message_priority(self, service: Service) -> None:
        """The level-3 page's payload says P1, although its class (passed in) is P2."""
        assert re.search(r"\(P1\)", _summary(service)) is not None


def _summary(service: Service) -> str:
    from mailwatch.alerting import payload
    from mailwatch.alerting.lifecycle import Intent, NotificationKind

    state = service.alerts.states[AlertKey("p1_stuck", "mappa", "mta1")]
    rule = service.alerts.rules["p1_stuck"]
    intent = Intent(NotificationKind.FIRING, ("duty_managers",), state)
    body = payload.build(intent, rule, Priority.P2, include_subjects=False, now=NOW)
    return str(body["alert"]["summary"])
