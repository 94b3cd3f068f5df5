"""``mailwatch backlog`` judges the drain as the metrics and the status page do (one truth).

Its ETA is :func:`mailwatch.core.backlog.drain_estimate` over the configured
``[metrics] drain_halflife``: a queue flat for most of an hour that has been draining fast
for the last half minute gets the fast ETA when the half-life is 10 s, and the slow one
with the default 10 minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.core.backlog import ClassCount, drain_estimate
from mailwatch.core.durations import format_seconds
from mailwatch.core.model import Priority
from mailwatch.store import Store


def _history(now: datetime) -> list[tuple[datetime, int]]:
    flat = [(now - timedelta(seconds=s), 1000) for s in range(3300, 30, -60)]
    draining = [(now - timedelta(seconds=30 - 5 * i), 1000 - 50 * i) for i in range(7)]
    return flat + draining


def _store(tmp_path: Path, halflife: str | None) -> tuple[Path, list[tuple[datetime, int]]]:
    config = tmp_path / "mailwatch.toml"
    metrics = f'[metrics]\ndrain_halflife = "{halflife}"\n' if halflife else ""
    config.write_text(f'[store]\npath = "{tmp_path / "mw.db"}"\n{metrics}')
    history = _history(datetime.now(UTC))
    with Store(tmp_path / "mw.db") as store:
        for at, total in history:
            count = ClassCount("mta1", "general", Priority.P4, total, 0, 0.0)
            store.record_scan("mta1", at, at, [], [count])
    return config, history


@pytest.mark.parametrize(("halflife", "seconds"), [("10s", 10.0), (None, 600.0)])
def test_backlog_eta_follows_the_configured_halflife(
    tmp_path: Path, halflife: str | None, seconds: float
) -> None:
    """The ETA printed is the core estimate at the configured half-life, whatever ``--hours``."""
    config, history = _store(tmp_path, halflife)
    now = history[-1][0]
    window = [p for p in history if p[0] >= now - timedelta(seconds=4 * seconds)]
    expected = drain_estimate(window, seconds)
    result = CliRunner().invoke(cli, ["-c", str(config), "backlog", "--hours", "2"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("mta1"))
    assert row.split()[-1] == format_seconds(expected.eta_seconds)
    assert f"{expected.rate * 3600:+.0f}/h" in row


def test_a_short_halflife_sees_the_recent_drain(tmp_path: Path) -> None:
    """10 s half-life: the last half minute's 10 msg/s, so the 700 left clear in about 70 s."""
    config, _ = _store(tmp_path, "10s")
    result = CliRunner().invoke(cli, ["-c", str(config), "backlog"])
    row = next(line for line in result.stdout.splitlines() if line.startswith("mta1"))
    assert row.split()[-1] == "1m", row  # 70 s, shown to the minute
