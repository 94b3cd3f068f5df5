"""``[metrics] drain_halflife``: the drain EWMA's half-life is configuration (issue 18's replay).

A time-compressed replay scales every interval and SLA down; with the half-life fixed at 10
minutes, a recovery of a few compressed minutes never turned the exported drain rate positive
(the clear ETA stayed +Inf). The key reaches the snapshot that ``/metrics`` renders.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailwatch.config.settings import load
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _history() -> list[tuple[datetime, int]]:
    """Five minutes of growth to 600, then one minute draining 5 a second (5 s scans)."""
    grow = [10 * i for i in range(61)]
    drain = [600 - 25 * (i + 1) for i in range(12)]
    return [(NOW + timedelta(seconds=5 * i), n) for i, n in enumerate(grow + drain)]


def test_the_half_life_is_a_metrics_key(tmp_path: Path) -> None:
    """Default 10m; "10s" is accepted."""
    assert load(None).metrics.drain_halflife.seconds == 600
    config = tmp_path / "mailwatch.toml"
    config.write_text('[metrics]\ndrain_halflife = "10s"\n')
    assert load(config).metrics.drain_halflife.seconds == 10


def test_a_short_half_life_sees_the_recovery_in_the_snapshot() -> None:
    """Same history: 10 s half-life shows the drain and a finite ETA; 10 min still growth."""
    history = _history()
    classes = load(None).classifier().all_classes
    common: dict[str, Any] = {
        "now": history[-1][0], "classes": classes, "verdicts": {"mta1": []},
        "queues": {"mta1": ("deferred",)}, "outcomes": OutcomeTotals(),
        "histories": {("mta1", "general"): history}, "health": {},
    }  # fmt: skip
    slow = build_snapshot(**common)
    fast = build_snapshot(**common, drain_halflife=10.0)
    assert slow.drain[("mta1", "general")].rate < 0
    assert math.isinf(slow.drain[("mta1", "general")].eta_seconds)
    assert fast.drain[("mta1", "general")].rate > 4
    assert fast.drain[("mta1", "general")].eta_seconds < 75  # 300 left at 5 a second: 60 s
