"""The incident replay, small, asserting the report's targets (opt-in: ``pytest -m replay``).

Runs ``bench/replay.py`` as its user would (a subprocess, about seven minutes): 1,500
messages, the link back at 10 messages a second (a recovery of about 150 s), and reads the
JSON report it writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.replay, pytest.mark.postfix, pytest.mark.imap,
              pytest.mark.prometheus, pytest.mark.alertmanager]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def test_a_small_replay_meets_the_targets(tmp_path: Path) -> None:
    """Every P1 alerted within a probe + 2 s, none missed, no false class, canary, ETA."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/replay.py"), "--messages", "1500", "--outage", "180",
         "--drain-rate", "10", "--out", str(tmp_path), "--name", "test"],
        cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    report = json.loads((tmp_path / "test-1500.json").read_text())
    summary = (tmp_path / "test-1500.md").read_text()
    assert report["p1"]["expected"] > 0, summary
    assert report["p1"]["never_alerted"] == [], summary
    assert report["p1"]["over_target"] == 0, summary
    assert report["false_alerts"] == [], summary
    assert report["canary"]["met"], summary
    assert report["eta"]["met"], summary
    assert proc.returncode == 0, proc.stdout[-3000:]
