"""Offline evaluation of clear-ETA estimators over recorded replays (issue 18).

    .venv/bin/python bench/incident/eta_lab.py RAW.json [RAW.json ...]

Each ``*.raw.json`` written by ``bench/replay.py`` holds the queue size of both MTAs every
0.5 s (``backlog``), the class, arrival and departure of every message (``sent``) and the
marks (``recovery``, ``clear``). The lab replays them as mailwatch sees them: a probe of each
MTA every ``--probe`` seconds (at several phases), recorded at its end (the store keeps
``finished_at``; a probe of a big queue takes longer: ``probe_seconds``), the snapshot read by
a scrape up to ``SCRAPE`` seconds later. At 25/50/75% of the recovery it prints each
estimator's error on the remaining time, (predicted - actual) / actual, worst over the phases.

Estimators: ``old``, the EWMA of per-scan slopes per class and the slowest class holding >= 5%
of the queue, read as the seconds gauge (what the report read until now); ``ewma-whole``, the
same EWMA on each MTA's whole backlog, pooled; ``lsq-whole``, the shipped
:func:`mailwatch.core.backlog.drain_estimate` on the whole backlogs pooled by
:func:`mailwatch.core.backlog.pooled_estimate`, read as the seconds gauge (``/s``) or as the
clear time (``/t``), for several window lengths (in half-lives).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from mailwatch.core import backlog as core

MTAS = ("hub", "relay")
SCRAPE = 1.0
FRACTIONS = (0.25, 0.5, 0.75)
History = list[tuple[datetime, int]]


def probe_seconds(n: int) -> float:
    """A Postfix probe's duration by queue size (4.8 s at 25,000 in the committed 30k run)."""
    return 0.2 + n * 1.8e-4


def ewma_estimate(history: Sequence[tuple[datetime, int]], halflife: float) -> core.DrainEstimate:
    """The estimator shipped before: a bias-corrected EWMA of per-scan slopes."""
    weighted = weights = 0.0
    for (t0, n0), (t1, n1) in itertools.pairwise(history):
        dt = (t1 - t0).total_seconds()
        if dt <= 0:
            continue
        alpha = 1.0 - math.exp(-dt * math.log(2) / halflife)
        weighted = (1 - alpha) * weighted + alpha * (-(n1 - n0) / dt)
        weights = (1 - alpha) * weights + alpha
    rate = weighted / weights if weights else 0.0
    at, n = history[-1] if history else (None, 0)
    if n == 0:
        return core.DrainEstimate(rate, 0.0, 0, at, at)
    if rate <= 0:
        return core.DrainEstimate(rate, math.inf, n, at)
    return core.DrainEstimate(rate, n / rate, n, at)


class Run:
    """One recorded replay: series at 0.5 s, and per class from the messages."""

    def __init__(self, path: Path) -> None:
        raw = json.loads(path.read_text())
        self.name = path.name
        self.marks: dict[str, float] = raw["marks"]
        self.times = [t for t, _ in raw["backlog"]]
        self.counts = [c for _, c in raw["backlog"]]
        self.sent = [(c, s, a, left) for _, c, s, a, _, left in raw["sent"] if s in MTAS]

    def total(self, source: str, t: float) -> int:
        """The source's queue size at ``t`` (the last sample before)."""
        i = max(0, bisect.bisect_right(self.times, t) - 1)
        return int(self.counts[i].get(source, 0))

    def per_class(self, source: str, t: float) -> dict[str, int]:
        """Messages of each class that entered at ``source`` and had not left at ``t``."""
        out: dict[str, int] = {}
        for cls, src, arrival, left in self.sent:
            if src == source:
                out.setdefault(cls, 0)
                if arrival <= t and (left is None or left > t):
                    out[cls] += 1
        return out


def scans(run: Run, source: str, probe: float, phase: float) -> list[tuple[float, float, int]]:
    """(probe start, recorded time, queue size) of each probe of ``source``."""
    out, t = [], run.times[0] + phase
    while t < run.marks["clear"] + 2 * probe:
        n = run.total(source, t)
        out.append((t, t + probe_seconds(n), n))
        t += probe
    return out


def dt(x: float) -> datetime:
    """Unix seconds as an aware datetime."""
    return datetime.fromtimestamp(x, UTC)


Estimator = Callable[[Run, dict[str, list[tuple[float, float, int]]], float], float]


def whole(fit: Callable[[History], core.DrainEstimate], clear_time: bool) -> Estimator:
    """Pooled whole-backlog estimator: predicted remaining seconds at ``at``."""

    def predict(run: Run, probes: dict[str, list[tuple[float, float, int]]], at: float) -> float:
        estimates = []
        for source in MTAS:
            seen = [(dt(end), n) for _, end, n in probes[source] if end <= at - SCRAPE]
            estimates.append(fit(seen[-720:]))
        pooled = core.pooled_estimate(estimates)
        if clear_time:
            if pooled.clear_at is None:
                return math.inf
            return pooled.clear_at.timestamp() - at
        return pooled.eta_seconds

    return predict


def old(halflife: float) -> Estimator:
    """Per class EWMA, pooled over the MTAs per class, slowest class with >= 5% (seconds)."""

    def predict(run: Run, probes: dict[str, list[tuple[float, float, int]]], at: float) -> float:
        counts: dict[str, float] = {}
        rates: dict[str, float] = {}
        for source in MTAS:
            seen = [(start, end) for start, end, _ in probes[source] if end <= at - SCRAPE]
            per: dict[str, History] = {}
            for start, end in seen[-40:]:
                for cls, n in run.per_class(source, start).items():
                    per.setdefault(cls, []).append((dt(end), n))
            for cls, history in per.items():
                e = ewma_estimate(history, halflife)
                counts[cls] = counts.get(cls, 0) + history[-1][1]
                rates[cls] = rates.get(cls, 0.0) + e.rate
        total = sum(counts.values())
        big = [c for c, n in counts.items() if n > 0 and n >= 0.05 * total]
        etas = [counts[c] / rates[c] if rates[c] > 0 else math.inf for c in big]
        return max(etas) if etas else 0.0

    return predict


def estimators(halflife: float) -> dict[str, Estimator]:
    """Every candidate, by name."""
    out: dict[str, Estimator] = {
        "old": old(halflife),
        "ewma-whole/s": whole(lambda h: ewma_estimate(h, halflife), clear_time=False),
        "ewma-whole/t": whole(lambda h: ewma_estimate(h, halflife), clear_time=True),
    }
    for k in (1.0, 2.0, 3.0, 4.0, 6.0):
        fit = _lsq(halflife, k)
        out[f"lsq{k:g}-whole/s"] = whole(fit, clear_time=False)
        out[f"lsq{k:g}-whole/t"] = whole(fit, clear_time=True)
    return out


def _lsq(halflife: float, windows: float) -> Callable[[History], core.DrainEstimate]:
    def fit(history: History) -> core.DrainEstimate:
        shipped = core.WINDOW_HALFLIVES
        core.WINDOW_HALFLIVES = windows
        try:
            return core.drain_estimate(history, halflife)
        finally:
            core.WINDOW_HALFLIVES = shipped

    return fit


def evaluate(run: Run, probe: float, halflife: float, phases: int) -> dict[str, list[float]]:
    """Per estimator, the worst error (by magnitude) at each fraction over the probe phases."""
    start, clear = run.marks["recovery"], run.marks["clear"]
    worst: dict[str, list[float]] = {}
    skip_old = len(run.sent) > 5000  # per-class recount is slow on the 30k runs
    for phase in range(phases):
        probes = {s: scans(run, s, probe, phase * probe / phases) for s in MTAS}
        for name, predict in estimators(halflife).items():
            if name == "old" and skip_old and phase:
                continue
            row = worst.setdefault(name, [0.0] * len(FRACTIONS))
            for i, fraction in enumerate(FRACTIONS):
                at = start + fraction * (clear - start)
                actual = clear - at
                error = (predict(run, probes, at) - actual) / actual
                if not abs(error) <= abs(row[i]):
                    row[i] = error
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    """Print each estimator's worst error per run, and whether it meets +-20% from halfway."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", nargs="+", type=Path)
    parser.add_argument("--probe", type=float, default=5.0)
    parser.add_argument("--halflife", type=float, default=10.0)
    parser.add_argument("--phases", type=int, default=5)
    args = parser.parse_args(argv)
    summary: dict[str, list[bool]] = {}
    for path in args.raw:
        run = Run(path)
        span = run.marks["clear"] - run.marks["recovery"]
        print(f"\n{run.name}: recovery {span:.0f} s")
        for name, errors in evaluate(run, args.probe, args.halflife, args.phases).items():
            met = all(abs(e) <= 0.2 for e in errors[1:])
            summary.setdefault(name, []).append(met)
            shown = " ".join(f"{100 * e:+7.0f}%" for e in errors)
            print(f"  {name:14} {shown}  {'met' if met else 'MISSED'}")
    print("\nmet at 50% and 75% in every phase:")
    for name, mets in summary.items():
        print(f"  {name:14} {sum(mets)}/{len(mets)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
