"""The incident replay at its scale, asserting the report's targets (``pytest -m replay``).

Runs ``bench/replay.py`` as its user would (a subprocess, about twelve minutes) with the
options of the committed full run (``bench/results/replay-30000.md``): 30,000 messages, a
400 s outage, and reads the JSON report it writes. Smaller replays do not meet the clear-ETA
target, and that is a finding about the ETA, not about the replay: at 1,500 and 3,000
messages the classes holding 5% of the backlog are a few dozen to a few hundred messages,
they drain unevenly, and a class's drain rate reads 0 at 75% of the recovery (ETA +Inf), or
+27% at halfway (December 2026 runs). At 30,000 on main the ETA was within +3% / +6% / +15%
in the committed run, and +13% / +8% / +34% in the next (08:46 UTC): at 75% of the recovery
52 s remained and the estimate lagged by 17 s. This test failed then, on that reading only:
the target is not reliably met at 75% yet (issue 18 left open for it).
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


def test_the_replay_meets_the_targets(tmp_path: Path) -> None:
    """Every P1 alerted within a probe + 2 s, none missed, no false class, canary, ETA."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/replay.py"), "--messages", "30000", "--outage", "400",
         "--out", str(tmp_path), "--name", "test"],
        cwd=REPO, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    report = json.loads((tmp_path / "test-30000.json").read_text())
    summary = (tmp_path / "test-30000.md").read_text()
    assert report["p1"]["expected"] > 0, summary
    assert report["p1"]["never_alerted"] == [], summary
    assert report["p1"]["over_target"] == 0, summary
    assert report["false_alerts"] == [], summary
    assert report["canary"]["met"], summary
    assert report["eta"]["met"], summary
    assert proc.returncode == 0, proc.stdout[-3000:]
