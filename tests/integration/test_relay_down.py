"""relay_down on a real Postfix: its relayhost (a loopback port nobody listens on) refuses.

The source asks ``postconf`` for ``relayhost`` at every probe; the scan stores it; ``stuck``,
``show`` (and the API, which serves the same shapes) and ``/metrics`` say ``relay_down``, not
``connect``: the smarthost itself is unreachable, not the destination.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailwatch.app.queries import message_detail, stuck_json
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.judgement import judge
from mailwatch.core.model import relayhost_of
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store
from mailwatch.web.metrics import MailwatchCollector

pytestmark = pytest.mark.postfix


async def test_refused_relayhost_is_relay_down_everywhere(
    postfix: PrivatePostfix, tmp_store_path: Path
) -> None:
    """A recall deferred at the refusing relayhost: relay_down in stuck, show and /metrics."""
    postfix.inject([make_message("OFFICIAL-SENSITIVE: Emergency recall - X100001")])
    (entry,) = postfix.wait_for_queue(1)
    assert "Connection refused" in str(entry["recipients"])
    later = datetime.now(UTC) + timedelta(hours=2)  # past the recall's SLA
    settings = load(None)
    source = PostfixSource("mta1", config_dir=postfix.config_dir, clock=lambda: later)
    assert await source.relayhost() == f"[127.0.0.1]:{postfix.relay_port}"
    with Store(tmp_store_path) as store:
        outcome = await Scanner(settings.classifier(), store).scan(source)
        assert outcome.ok, outcome.error
        assert relayhost_of(outcome.observation) == f"[127.0.0.1]:{postfix.relay_port}"
        judged = judge(store.get(str(entry["queue_id"])), later, later - timedelta(days=1))
        assert judged.stuck
        assert stuck_json(judged)["reason_category"] == "relay_down"
        assert ("reason category", "relay_down") in message_detail(judged, later)
    snap = build_snapshot(
        now=later, classes=settings.classifier().all_classes,
        verdicts={"mta1": outcome.verdicts}, queues={"mta1": ("deferred",)},
        outcomes=OutcomeTotals(), histories={}, health={},
        relayhosts={"mta1": relayhost_of(outcome.observation)},
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(MailwatchCollector(lambda: snap))
    text = generate_latest(registry).decode()
    assert (
        'mailwatch_stuck_messages_by_reason{priority="P1",reason="relay_down",source="mta1"} 1.0'
        in text
    )
