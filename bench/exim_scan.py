"""Benchmark: mailwatch's Exim scan against ``exim -bpru`` on a large deferred queue.

Builds a private Exim (:class:`mailwatch.sandbox.exim.PrivateExim`, Debian 12's Exim 4.96
unpacked under ``.venv/exim``) whose remote deliveries go to a closed loopback port, fills its
queue with N varied probation-style messages (``bench/postfix_scan.py``'s generator), runs the
queue once so that every message has been tried and deferred (a message log with a reason),
and then times, on that same queue and in the same run:

* baseline A: ``exim -C CONF -bpru > /dev/null`` (Exim reads every ``-H`` spool file);
* baseline B: ``exiqgrep -c`` (a Perl wrapper around ``exim -bpu``), when present;
* mailwatch's first scan (fresh store, fresh source: finds, reads, classifies, stores);
* mailwatch's rescan of the unchanged queue;
* a rescan with 1% of the messages changed (frozen with ``-Mf``, then thawed with ``-Mt``);
* a rescan after K new messages arrive (then removed with ``-Mrm``, and rescanned again);
* ``mailwatch scan`` in a process of its own (``bench/peak_rss.py``): its own peak RSS.

Wall time, CPU time (this process and its children) and the load average are printed next to
each other: the machine is shared. Run as root: ``.venv/bin/python bench/exim_scan.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.sandbox.exim import PrivateExim, default_prefix, unavailable_reason
from mailwatch.sources.exim import EximSource
from mailwatch.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import footprint  # bench/footprint.py: the launcher for a process's own peak RSS
from postfix_scan import make_messages  # the same varied messages as the Postfix benchmark

SOURCE_NAME = "bench"
INJECT_BATCH = 250  # messages per ``exim -odq -bs`` session


class BenchError(RuntimeError):
    """The benchmark could not run, or an invariant it checks did not hold."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition``."""
    if not condition:
        raise BenchError(message)


def _dialogue(messages: Sequence[EmailMessage]) -> bytes:
    """One SMTP session (``-bs``) submitting every message in turn."""
    parts = [b"HELO bench.invalid\r\n"]
    for message in messages:
        rcpts = [a for _, a in getaddresses([str(message["To"]), str(message["Cc"] or "")]) if a]
        body = message.as_bytes().replace(b"\r\n", b"\n").split(b"\n")
        data = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in body)
        parts += [
            f"MAIL FROM:<{parseaddr(str(message['From']))[1]}>\r\n".encode(),
            *(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts),
            b"DATA\r\n",
            data.rstrip(b"\r\n") + b"\r\n.\r\n",
        ]
    return b"".join([*parts, b"QUIT\r\n"])


def inject(exim: PrivateExim, messages: Sequence[EmailMessage], workers: int = 2) -> None:
    """Queue ``messages`` (``-odq``: no delivery), ``INJECT_BATCH`` per Exim process."""
    batches = [messages[i : i + INJECT_BATCH] for i in range(0, len(messages), INJECT_BATCH)]
    with ThreadPoolExecutor(workers) as pool:
        for reply in pool.map(lambda b: exim.exim("-odq", "-bs", stdin=_dialogue(b)), batches):
            check(reply.count("250 OK id=") > 0 or not reply, f"not queued: {reply[-300:]}")


def queue_ids(exim: PrivateExim) -> list[str]:
    """Every queued id, from the spool's ``-H`` files (no Exim process)."""
    found = []
    for _root, _dirs, files in os.walk(exim.spool_dir / "input"):
        found += [name[:-2] for name in files if name.endswith("-H")]
    return sorted(found)


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``items`` in slices of ``size`` (command lines stay short)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def build(root: Path, count: int, seed: int, attempt: bool) -> tuple[PrivateExim, dict[str, float]]:
    """A private Exim with ``count`` queued (and, with ``attempt``, deferred) messages."""
    exim = PrivateExim.create(root)
    have = queue_ids(exim)
    if len(have) == count:
        print(f"  reusing the kept queue of {count} messages under {root}", flush=True)
        return exim, {"reused": 1.0}
    if have:
        exim.delete_all()
    t0 = time.perf_counter()
    inject(exim, make_messages(random.Random(seed), count))
    injected = time.perf_counter() - t0
    check(len(queue_ids(exim)) == count, f"{len(queue_ids(exim))} queued, expected {count}")
    t1 = time.perf_counter()
    if attempt:  # two queue runners at once: each message tried (and deferred) once
        runners = [
            subprocess.Popen([str(exim.command), "-C", str(exim.config_path), "-qf"])
            for _ in range(2)
        ]
        check(all(r.wait() == 0 for r in runners), "exim -qf failed")
    tried = time.perf_counter() - t1
    print(f"  built {count} messages: injected in {injected:.1f}s, tried in {tried:.1f}s")
    return exim, {"inject_seconds": injected, "attempt_seconds": tried}


@contextmanager
def timed(into: dict[str, list[float]], name: str) -> Iterator[None]:
    """Record wall and CPU seconds (this process plus its reaped children) under ``name``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = time.process_time(), time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    into.setdefault(name, []).append(wall)
    into.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu0 + children)


@dataclass
class Results:
    """Every sample, by measurement name, and facts about the run."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def median(self, name: str) -> float:
        """Median of a measurement's samples."""
        return statistics.median(self.samples[name])


def run_command(argv: list[str]) -> None:
    """Run a baseline command, stdout to /dev/null; raise if it fails."""
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    check(done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-300:]!r}")


def make_source(exim: PrivateExim) -> EximSource:
    """A fresh source watching the private Exim."""
    return EximSource(SOURCE_NAME, exim=str(exim.command), config=exim.config_path, timeout=3600)


async def scan_once(scanner: Scanner, source: EximSource, expect: int) -> None:
    """One scan; its message count checked."""
    outcome = await scanner.scan(source)
    seen = len(outcome.verdicts)
    check(seen == expect, f"scan saw {seen} messages, expected {expect}")


async def measure(  # noqa: PLR0915 - one sequence of measurements, in order
    exim: PrivateExim, workdir: Path, runs: int, added: int
) -> Results:
    """Every measurement, ``runs`` times, on the same queue."""
    results = Results()
    s = results.samples
    ids = queue_ids(exim)
    total = len(ids)
    bpru = [str(exim.command), "-C", str(exim.config_path), "-bpru"]
    exiqgrep = exim.prefix / "usr/sbin/exiqgrep"
    grep = [str(exiqgrep), "-E", str(exim.command), "-C", str(exim.config_path), "-c"]
    classifier = load(None).classifier()
    source = make_source(exim)
    store: Store | None = None
    for run in range(1, runs + 1):
        with timed(s, "bpru"):
            run_command(bpru)
        if exiqgrep.is_file() and shutil.which("perl"):
            with timed(s, "exiqgrep_c"):
                run_command(grep)
        if store is not None:
            store.close()
        store = Store(workdir / f"first-{run}.sqlite")
        scanner = Scanner(classifier, store)
        source = make_source(exim)
        with timed(s, "first_scan"):
            await scan_once(scanner, source, total)
        first, cpu = s["first_scan"][-1], s["first_scan_cpu"][-1]
        print(
            f"  run {run}/{runs}: -bpru {s['bpru'][-1]:.3f}s, first {first:.3f}s (cpu {cpu:.2f}s)"
        )
    check(store is not None, "no runs")
    assert store is not None
    try:
        for _ in range(runs):
            with timed(s, "rescan"):
                await scan_once(scanner, source, total)
        changed = ids[::100][: max(1, total // 100)]
        for _ in range(runs):
            for part in chunks(changed):
                exim.exim("-Mf", *part)
            with timed(s, "rescan_1pct"):
                await scan_once(scanner, source, total)
            for part in chunks(changed):
                exim.exim("-Mt", *part)
            with timed(s, "rescan_1pct"):
                await scan_once(scanner, source, total)
        for round_ in range(runs if added else 0):
            before = set(queue_ids(exim))
            inject(exim, make_messages(random.Random(round_), added, start=10_000_000), 1)
            new = sorted(set(queue_ids(exim)) - before)
            with timed(s, "rescan_added"):
                await scan_once(scanner, source, total + added)
            exim.remove(*new)
            await scan_once(scanner, source, total)
        shown = {n: f"{results.median(n):.3f}s" for n in s if n.startswith("rescan")}
        print(f"  rescans: {shown}", flush=True)
    finally:
        store.close()
    results.facts["own_scan"] = own_scan(exim, workdir)
    print(f"  mailwatch scan in its own process: {results.facts['own_scan']}", flush=True)
    return results


def own_scan(exim: PrivateExim, workdir: Path) -> dict[str, float]:
    """A first ``mailwatch scan`` (new store) in a process of its own: its own peak RSS."""
    config = workdir / "own.toml"
    for stale in workdir.glob("own.sqlite*"):
        stale.unlink()
    config.write_text(
        f'[store]\npath = "{workdir / "own.sqlite"}"\n[sources.{SOURCE_NAME}]\ntype = "exim"\n'
        f'exim = "{exim.command}"\nconfig = "{exim.config_path}"\ntimeout = "1h"\n',
        encoding="utf-8",
    )
    return footprint.launch([*footprint.MAILWATCH, "-c", str(config), "scan", "--json"], workdir)


def report(args: argparse.Namespace, results: Results) -> dict[str, Any]:
    """Print the table of medians and ratios; return it for ``--json``."""
    names = [n for n in ("bpru", "exiqgrep_c", "first_scan", "rescan", "rescan_1pct",
                         "rescan_added") if n in results.samples]  # fmt: skip
    rows = {n: {"wall": results.median(n), "cpu": results.median(f"{n}_cpu")} for n in names}
    base = rows["bpru"]["wall"]
    first = rows["first_scan"]["wall"]
    print(f"\nExim queue of {args.messages} messages, {args.runs} runs (medians):")
    print(f"  {'measurement':<16}{'wall s':>10}{'cpu s':>10}{'/ -bpru':>10}{'/ first':>10}")
    for name, row in rows.items():
        print(f"  {name:<16}{row['wall']:>10.3f}{row['cpu']:>10.3f}"
              f"{row['wall'] / base:>10.2f}{row['wall'] / first:>10.3f}")  # fmt: skip
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"  load average: start {results.facts['loadavg_start']}, end {load_end}")
    return {"rows": rows, "samples": results.samples, "facts": results.facts | {
        "loadavg_end": load_end, "messages": args.messages, "runs": args.runs}}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="queue size N (10000)")
    parser.add_argument("--runs", type=int, default=3, help="samples per measurement (3)")
    parser.add_argument("--added", type=int, default=100, help="new messages for a rescan")
    parser.add_argument("--seed", type=int, default=20140611, help="message generator seed")
    parser.add_argument("--keep", metavar="DIR", help="build (or reuse) the queue under DIR")
    parser.add_argument("--no-attempt", action="store_true", help="do not run the queue once")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when measured, 2 when the benchmark could not run."""
    args = parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mw-exim-bench-"))
    reason = unavailable_reason(default_prefix())
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    facts: dict[str, Any] = {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "platform": platform.platform(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    try:
        exim, built = build(root / "exim", args.messages, args.seed, not args.no_attempt)
        workdir = root / "work"
        workdir.mkdir(exist_ok=True)
        results = asyncio.run(measure(exim, workdir, args.runs, args.added))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results.facts |= facts | {"build": built}
    table = report(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
