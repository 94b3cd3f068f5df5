"""Benchmark: 8 API clients against a real ``mailwatch run`` while it scans every 5 s.

Issue 11 item 4: with 20,000 held messages, 8 clients on ``GET /api/v1/messages`` gave a p99
of 6 s and stretched the 5 s scan interval to ~13 s, because each request judged every row on
the event loop. This script measures it again:

1. a private Postfix (:class:`mailwatch.sandbox.postfix.PrivatePostfix`) with a few deferred
   messages, configured as source ``mta1`` (interval ``--interval``, default 5 s);
2. the store pre-filled through the store's public API (``Store.record_scan``) with N held
   messages (``--messages``, default 20,000) of a source ``bulk`` that is not configured, so
   they stay queued, held and stuck for the whole run;
3. ``mailwatch run`` started as a subprocess, then ``--clients`` threads (default 8) calling
   ``GET /api/v1/messages`` (stuck only, 100 per page) back to back for ``--seconds``;
4. reported: request count, p50/p99/max latency, and the intervals between ``mta1``'s scans
   (from the store's ``scans`` table) during the load, against the configured interval.

Run as root (Postfix is started privately)::

    .venv/bin/python bench/api_load.py                       # 20,000 held, 8 clients, 30 s
    .venv/bin/python bench/api_load.py --messages 5000 --seconds 20 --json /tmp/api.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.model import Message, Recipient
from mailwatch.core.sla import evaluate
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.store import Store

TOKEN = "api-load-bench-token"  # noqa: S105 - a throwaway token for a private loopback server
SUBJECTS = ("Emergency recall - A Person", "MAPPA level 3 minutes", "Case allocation", "Lunch")


def prefill(config: Path, count: int) -> None:
    """Record one scan of source ``bulk`` with ``count`` held messages (the public API)."""
    settings = load(config)
    classifier = settings.classifier()
    classes = {c.name: c for c in classifier.all_classes}
    now = datetime.now(UTC)
    verdicts = []
    for i in range(count):
        arrival = now - timedelta(seconds=60 + i)
        message = Message(
            f"bulk/H{i:08X}/{int(arrival.timestamp())}", "bulk", f"H{i:08X}", "hold", arrival,
            2000, "om@probation.example", (Recipient("ppcs@justice.example"),),
            subject=SUBJECTS[i % len(SUBJECTS)],
        )  # fmt: skip
        found = classifier.classify(message)
        verdicts.append(evaluate(message, found, classes[found.name], now))
    with Store(settings.store.path) as store:
        store.record_scan(
            "bulk", now, now, verdicts, count_by_class("bulk", classifier.all_classes, verdicts)
        )


def client(base: str, stop: float, latencies: list[float], errors: list[str]) -> None:
    """Call the listing back to back until ``stop`` (monotonic seconds)."""
    request = urllib.request.Request(  # noqa: S310 - loopback http, built here
        f"{base}/api/v1/messages?limit=100", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                response.read()
        except OSError as exc:
            errors.append(str(exc))
            continue
        latencies.append(time.perf_counter() - t0)


def scan_intervals(db: Path, source: str, since: float, until: float) -> list[float]:
    """Seconds between consecutive scans of ``source`` that started in [since, until]."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        starts = [
            r[0]
            for r in conn.execute(
                "SELECT started_at FROM scans WHERE source = ? AND started_at BETWEEN ? AND ?"
                " ORDER BY started_at",
                (source, since, until),
            )
        ]
    return [b - a for a, b in itertools.pairwise(starts)]


def wait_ready(base: str, timeout: float = 120) -> None:
    """Until ``/readyz`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("mailwatch run did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Set up, load, measure; returns the figures."""
    postfix = PrivatePostfix.create(root / "postfix")
    postfix.start()
    try:
        postfix.inject([make_message(f"Emergency recall - Person {i}") for i in range(5)])
        postfix.wait_for_queue(5)
        port = free_port()
        config = root / "mailwatch.toml"
        config.write_text(f"""
[store]
path = "{root / "mw.db"}"
[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "bench"
scope = "read"
secret = {{ env = "MW_BENCH_TOKEN" }}
[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "{args.interval}s"
""")
        prefill(config, args.messages)
        env = {**os.environ, "MW_BENCH_TOKEN": TOKEN}
        service = subprocess.Popen(
            [sys.executable, "-m", "mailwatch", "-c", str(config), "run"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base)
            time.sleep(args.interval * 2)  # a couple of quiet scans first
            latencies: list[float] = []
            errors: list[str] = []
            began = time.time()
            stop = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(base, stop, latencies, errors))
                for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            ended = time.time()
        finally:
            service.terminate()
            service.wait(timeout=30)
    finally:
        postfix.stop()
    intervals = scan_intervals(root / "mw.db", "mta1", began, ended)
    return {
        "messages_held": args.messages,
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_seconds": round(percentile(latencies, 0.50), 4) if latencies else None,
        "p99_seconds": round(percentile(latencies, 0.99), 4) if latencies else None,
        "max_seconds": round(max(latencies), 4) if latencies else None,
        "configured_interval_seconds": args.interval,
        "scan_intervals_median_seconds": round(statistics.median(intervals), 2)
        if intervals
        else None,
        "scan_intervals_max_seconds": round(max(intervals), 2) if intervals else None,
        "scans_during_load": len(intervals) + 1 if intervals else 0,
    }


def main() -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mw-api-load-") as tmp:
        figures = run(args, Path(tmp))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
