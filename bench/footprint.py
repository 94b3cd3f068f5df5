"""Footprint measurements shared by the Postfix benchmark: each in a process of its own.

* :func:`own_scan`: one ``mailwatch scan`` launched through ``bench/peak_rss.py`` (its OWN peak
  RSS, not the benchmark's: see that module);
* :func:`run_rss`: ``mailwatch run`` until it has recorded ``scans`` scans of the source, then
  its ``VmRSS`` and ``VmHWM`` from ``/proc/PID/status``;
* :func:`tracemalloc_top`: one scan in a process traced by ``tracemalloc``: where the memory
  still held after the scan (what ``mailwatch run`` keeps between scans) was allocated;
* :func:`read_commands`: ``stuck``, ``stuck --json``, ``stuck --priority P1`` and ``check`` on
  a copy of the scanned store in which every queued message is past its deadline (so stuck).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAILWATCH = [sys.executable, "-m", "mailwatch"]


def write_config(workdir: Path, name: str, config_dir: Path, extra: str = "") -> Path:
    """A config watching the private Postfix as source ``bench``, store in ``workdir``."""
    config = workdir / f"{name}.toml"
    for stale in workdir.glob(f"{name}.sqlite*"):
        stale.unlink()
    config.write_text(
        f'[store]\npath = "{workdir / name}.sqlite"\n{extra}'
        f'[sources.bench]\ntype = "postfix"\nconfig_dir = "{config_dir}"\ninterval = "1s"\n'
        'timeout = "10m"\n',
        encoding="utf-8",
    )
    return config


def launch(args: list[str], workdir: Path) -> dict[str, float]:
    """``args`` through the launcher: wall seconds and own peak RSS (MiB); raises on failure."""
    out = workdir / "peak_rss.json"
    done = subprocess.run(  # fixed command lines of this benchmark
        [sys.executable, str(HERE / "peak_rss.py"), str(out), "--", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    measured = json.loads(out.read_text())
    if measured["returncode"] not in (0, 1, 2):  # check exits 2 (CRITICAL) by design
        raise RuntimeError(f"{args} failed: {done.stderr[-2000:]!r}")
    return {key: measured[key] for key in ("seconds", "cpu_seconds", "peak_rss_mib")}


def own_scan(workdir: Path, config_dir: Path) -> dict[str, float]:
    """A first ``mailwatch scan`` (new store) in its own process; plus the store's size."""
    config = write_config(workdir, "footprint", config_dir)
    result = launch([*MAILWATCH, "-c", str(config), "scan", "--json"], workdir)
    size = sum(p.stat().st_size for p in workdir.glob("footprint.sqlite*"))
    return result | {"store_mib": size / 2**20}


def _status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def run_rss(workdir: Path, config_dir: Path, port: int, scans: int = 3) -> dict[str, float]:
    """``mailwatch run`` until ``scans`` good scans are stored: its VmRSS and VmHWM (MiB)."""
    config = write_config(workdir, "run", config_dir, f'[http]\nlisten = "127.0.0.1:{port}"\n')
    store = workdir / "run.sqlite"
    t0 = time.perf_counter()
    child = subprocess.Popen(  # fixed command line
        [*MAILWATCH, "-c", str(config), "run"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        done = 0
        while done < scans:
            if child.poll() is not None:
                raise RuntimeError(f"mailwatch run exited {child.returncode}")
            time.sleep(0.5)
            if store.exists():
                try:
                    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                        done = db.execute("SELECT count(*) FROM scans WHERE ok").fetchone()[0]
                except sqlite3.Error:
                    continue
        return _status(child.pid) | {"scans": done, "seconds": time.perf_counter() - t0}
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


TRACE = """
import asyncio, sys, tracemalloc
tracemalloc.start(1)
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store
from pathlib import Path
settings = load(Path(sys.argv[1]))
store = Store(settings.store.path)
scanner = Scanner(settings.classifier(), store)
sources = build_sources(settings, store)
kept = []
async def main() -> None:  # returns nothing: asyncio.run reprs a result (CPython issue 112559)
    for _ in range(int(sys.argv[3])):
        kept[:] = await scanner.scan_all(sources)
asyncio.run(main())
current, peak = tracemalloc.get_traced_memory()
snapshot = tracemalloc.take_snapshot()
print(current / 2**20, peak / 2**20)
for group in ("lineno", "filename"):
    for stat in snapshot.statistics(group)[: int(sys.argv[2])]:
        frame = stat.traceback[0]
        where = f"{frame.filename}:{frame.lineno}" if group == "lineno" else frame.filename
        print(f"{group}\\t{stat.size / 2**20:.1f}\\t{stat.count}\\t{where}")
"""


def tracemalloc_top(
    workdir: Path, config_dir: Path, top: int = 12, scans: int = 1
) -> dict[str, Any]:
    """Python heap held after ``scans`` scans (as ``run`` holds it between scans).

    The top lines (``top``) and the top modules (``by_module``) that allocated what is held.
    """
    config = write_config(workdir, "traced", config_dir)
    out = subprocess.run(  # our interpreter, the script above
        [sys.executable, "-c", TRACE, str(config), str(top), str(scans)], capture_output=True,
        text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    current, peak = (float(x) for x in out[0].split())
    rows: dict[str, list[dict[str, Any]]] = {"lineno": [], "filename": []}
    for line in out[1:]:
        group, size, count, where = line.split("\t")
        rows[group].append({"mib": float(size), "blocks": int(count),
                            "where": where.replace(str(HERE.parent) + "/", "")})  # fmt: skip
    return {"traced_after_scan_mib": current, "traced_peak_mib": peak, "scans": scans,
            "top": rows["lineno"], "by_module": rows["filename"]}  # fmt: skip


READ_COMMANDS = {
    "stuck": ["stuck"],
    "stuck --json": ["stuck", "--json"],
    "stuck --priority P1": ["stuck", "--priority", "P1"],
    "check": ["check"],
}


def read_commands(workdir: Path, runs: int) -> dict[str, dict[str, float]]:
    """The read commands on a copy of the footprint store with every queued message stuck."""
    source, copy = workdir / "footprint.sqlite", workdir / "read.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(source, copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE messages SET deadline = 0 WHERE status = 'queued'")
        stuck = db.execute("SELECT count(*) FROM messages WHERE status = 'queued'").fetchone()[0]
    config = workdir / "read.toml"
    config.write_text(f'[store]\npath = "{copy}"\n', encoding="utf-8")
    results: dict[str, dict[str, float]] = {}
    for name, args in READ_COMMANDS.items():
        samples = [launch([*MAILWATCH, "-c", str(config), *args], workdir) for _ in range(runs)]
        results[name] = {"seconds": statistics.median(s["seconds"] for s in samples),
                         "cpu_seconds": statistics.median(s["cpu_seconds"] for s in samples),
                         "stuck": stuck,
                         "peak_rss_mib": max(s["peak_rss_mib"] for s in samples)}  # fmt: skip
    return results


PYTHON_SIDE = """
import asyncio, json, random, sys, time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from mailwatch.alerting.situation import class_views
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.destinations import sample
from mailwatch.core.model import Headers, Message, QueueObservation, Recipient
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot
from mailwatch.store import Store

n, store_path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(13)
now = datetime.now(UTC)
REASONS = ("connect to 10.0.0.1[10.0.0.1]:25: Connection refused",
           "host mx said: 451 4.7.1 try later")
SUBJECTS = ("Recall of CRN X{} urgent", "Victim contact update {}", "Weekly report {}",
            "MAPPA level 3 {}")

def message(i, queue="deferred", reason=None):
    arrival = now - timedelta(seconds=rng.randint(0, 6 * 3600))
    subject = SUBJECTS[i % 4].format(i)
    headers = Headers((("From", f"officer{i}@justice.example"), ("Subject", subject)))
    return Message(f"bench/Q{i:08X}/{int(arrival.timestamp())}", "bench", f"Q{i:08X}", queue,
                   arrival, 2000, f"officer{i}@justice.example",
                   (Recipient(f"ap{i}@partner{i % 50}.example", reason or REASONS[i % 2]),),
                   headers, subject)

messages = [message(i) for i in range(n)]
settings = load(None)
scanner = Scanner(settings.classifier(), Store(store_path))
clock = [now]

@dataclass
class Source:
    name: str = "bench"
    async def probe(self):
        clock[0] += timedelta(seconds=30)
        return QueueObservation("bench", clock[0], tuple(messages))

source = Source()
kept = []
async def scan():  # returns nothing: asyncio.run reprs a result (CPython issue 112559)
    kept[:] = [await scanner.scan(source)]

def run_scan():
    asyncio.run(scan())
    return kept[0]

def cpu(label, fn):
    t0 = time.process_time()
    out = fn()
    return out, {label: round(time.process_time() - t0, 4)}

results = {}
outcome, r = cpu("first_scan", run_scan); results |= r
outcome, r = cpu("rescan_unchanged", run_scan); results |= r
for i in rng.sample(range(n), n // 100):  # 1%: moved or a new delay reason
    messages[i] = messages[i]._replace(queue="hold" if i % 2 else "active")
outcome, r = cpu("rescan_1pct", run_scan); results |= r
classes = scanner.classifier.all_classes
verdicts = {"bench": outcome.verdicts}
backlogs = {"bench": scanner.backlog("bench")} if hasattr(scanner, "backlog") else None
extra = {"backlogs": backlogs} if backlogs is not None else {}
_, r = cpu("snapshot", lambda: build_snapshot(clock[0], classes, verdicts, {"bench": ("deferred",)},
           OutcomeTotals(), {}, {}, **extra)); results |= r
views = (lambda: class_views(classes, verdicts, (), None, backlogs)) if backlogs else (
    lambda: class_views(classes, verdicts, ()))
_, r = cpu("alert_views", views); results |= r
_, r = cpu("deferral_sample", lambda: sample(verdicts, {})); results |= r
print(json.dumps(results))
"""


def python_side(messages: int, workdir: Path) -> dict[str, float]:
    """CPU seconds of the scan-side Python on a fake source of ``messages`` (no Postfix).

    First scan, unchanged rescan, rescan with 1% moved, then the metrics snapshot, the alert
    views and the deferral sample built from the result: what grows with the backlog.
    """
    out = subprocess.run(  # our interpreter, the script above
        [sys.executable, "-c", PYTHON_SIDE, str(messages), str(workdir / "python.sqlite")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# Command line: the footprint rows alone, on a kept queue (``bench/postfix_scan.py --keep``).
# --------------------------------------------------------------------------------------------


def _instance(root: Path) -> tuple[Any, bool]:
    """The kept Postfix instance under ``root``, started if it is not running (and whether)."""
    sys.path.insert(0, str(HERE.parent))
    from mailwatch.sandbox.postfix import PrivatePostfix

    running = PrivatePostfix(root=root.resolve(), smtp_port=0, relay_port=0)
    if running.is_running():  # another benchmark's: use it as it is, leave it running
        return running, False
    instance = PrivatePostfix.create(root)
    sys.path.insert(0, str(HERE))
    from postfix_scan import quieten

    quieten(instance)
    instance.start()
    return instance, True


def main(argv: list[str] | None = None) -> int:
    """``python bench/footprint.py --keep DIR``: own scan peak, run RSS, tracemalloc top-N."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        description="mailwatch's memory at scale on a kept Postfix queue: own peak RSS of"
        " `mailwatch scan`, `mailwatch run` RSS after N scans, and the tracemalloc top-N of"
        " the heap held after one scan."
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="a queue kept by bench/postfix_scan.py --keep (never modified)",
    )
    parser.add_argument(
        "--python", type=int, metavar="N",
        help="only the scan-side Python CPU on a fake source of N messages",
    )  # fmt: skip
    parser.add_argument(
        "--scans",
        type=int,
        nargs="*",
        default=[3, 10],
        help="`run` RSS after each of these scan counts (3 10)",
    )
    parser.add_argument("--top", type=int, default=15, help="tracemalloc rows (15)")
    parser.add_argument(
        "--trace-scans", type=int, default=1, metavar="N",
        help="scans before the tracemalloc snapshot (1: the first scan's heap; 2: after a"
        " rescan by the queue directories, as `run` holds it)",
    )  # fmt: skip
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["scan", "run", "trace"],
        help="measurements to leave out",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.python:
        with tempfile.TemporaryDirectory(prefix="mw-footprint-") as tmp:
            loadavg = [round(x, 2) for x in os.getloadavg()]
            side = python_side(args.python, Path(tmp)) | {"loadavg": loadavg}
        print(json.dumps(side))
        return 0
    if args.keep is None:
        parser.error("--keep DIR is required (or --python N)")
    from mailwatch.sandbox.postfix import free_port

    instance, started = _instance(Path(args.keep))
    results: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        with tempfile.TemporaryDirectory(prefix="mw-footprint-") as tmp:
            workdir = Path(tmp)
            if "scan" not in args.skip:
                results["scan"] = own_scan(workdir, instance.config_dir)
                print(f"mailwatch scan: {results['scan']}", flush=True)
            for scans in [] if "run" in args.skip else args.scans:
                got = run_rss(workdir, instance.config_dir, free_port(), scans)
                results[f"run_{scans}"] = got
                print(f"mailwatch run after {scans} scans: {got}", flush=True)
            if "trace" not in args.skip:
                results["trace"] = traced = tracemalloc_top(
                    workdir, instance.config_dir, args.top, args.trace_scans
                )
                print(f"tracemalloc: held after {args.trace_scans} scan(s)"
                      f" {traced['traced_after_scan_mib']:.1f} MiB, peak"
                      f" {traced['traced_peak_mib']:.1f} MiB; by line, by module:")  # fmt: skip
                for row in (*traced["top"], *traced["by_module"]):
                    print(f"  {row['mib']:7.1f} MiB {row['blocks']:>9} blocks  {row['where']}")
    finally:
        if started:
            instance.stop()
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average: {results['loadavg_at_start']} -> {results['loadavg_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
