"""Benchmark: the on-call read commands (``stuck``, ``stuck --json``, ``check``) at N stuck.

Issue 13: with 100,000 stuck messages ``stuck`` took 5.5 s, ``stuck --json`` 5.9 s and
``check`` 3.2 s. Target: under 0.5 s each, as a process of its own (imports included).

The store is filled once through the store's public API (``Store.record_scan``) with N held
(so stuck at once) messages of varied classes, kept in ``--keep DIR`` for the next run. Each
command then runs ``--runs`` times as ``python -m mailwatch -c CONFIG ...`` through
``bench/peak_rss.py`` (its own peak RSS); medians of wall time are printed, with the load
average. No Postfix needed::

    .venv/bin/python bench/read_commands.py --messages 100000 --keep /var/tmp/mw-read

Children start from cached bytecode, as an installed package does (``--no-bytecode``: compile
at every start, as an editable install under ``PYTHONDONTWRITEBYTECODE`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.model import Message, Recipient
from mailwatch.core.sla import evaluate
from mailwatch.store import Store

SUBJECTS = ("Emergency recall - A Person", "MAPPA level 3 minutes", "Case allocation",
            "Court results Leeds MC", "Breach of licence conditions", "Lunch")  # fmt: skip
COMMANDS = {
    "stuck": ["stuck"],
    "stuck --json": ["stuck", "--json"],
    "stuck --priority P1": ["stuck", "--priority", "P1"],
    "stuck --all --json": ["stuck", "--all", "--json"],
    "check": ["check"],
}
HERE = Path(__file__).resolve().parent


def prefill(config: Path, count: int) -> None:
    """Record one scan of source ``bulk`` with ``count`` held messages (in chunks of 10,000)."""
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
            subject=f"{SUBJECTS[i % len(SUBJECTS)]} {i}",
        )  # fmt: skip
        found = classifier.classify(message)
        verdicts.append(evaluate(message, found, classes[found.name], now))
    with Store(settings.store.path) as store:
        store.record_scan(
            "bulk", now, now, verdicts, count_by_class("bulk", classifier.all_classes, verdicts)
        )


def time_command(config: Path, args: list[str], out: Path) -> dict[str, float]:
    """One run of ``mailwatch ARGS`` in its own process: seconds, CPU, peak RSS, output."""
    with tempfile.TemporaryFile() as stdout:
        subprocess.run(  # fixed command lines of this benchmark
            [sys.executable, str(HERE / "peak_rss.py"), str(out), "--",
             sys.executable, "-m", "mailwatch", "-c", str(config), *args],
            stdout=stdout, stderr=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        size = stdout.tell()
    measured = json.loads(out.read_text())
    return {"seconds": measured["seconds"], "cpu_seconds": measured["cpu_seconds"],
            "peak_rss_mib": measured["peak_rss_mib"], "output_bytes": size}  # fmt: skip


def main() -> int:
    """Build (or reuse) the store, time every command, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the store in DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--no-bytecode", action="store_true",
        help="compile every module at every start (as PYTHONDONTWRITEBYTECODE does); default:"
        " cached bytecode (PYTHONPYCACHEPREFIX under the store's directory), as installed",
    )  # fmt: skip
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="mw-read-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.no_bytecode:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    elif os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(root / "pycache"))
    config = root / f"read-{args.messages}.toml"
    store = root / f"read-{args.messages}.sqlite"
    config.write_text(f'[store]\npath = "{store}"\n', encoding="utf-8")
    if not store.exists():
        print(f"filling {store} with {args.messages} held messages", flush=True)
        prefill(config, args.messages)
    else:
        with Store(store):  # a kept store of an older schema is migrated once, untimed
            pass
    results: dict[str, dict[str, float]] = {}
    for name, command in COMMANDS.items():
        runs = [time_command(config, command, root / "rss.json") for _ in range(args.runs)]
        time_command(config, command, root / "rss.json")  # untimed: warms the bytecode cache
        results[name] = {
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "max_seconds": max(r["seconds"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "output_bytes": runs[-1]["output_bytes"],
        }
    load_avg = [round(x, 2) for x in os.getloadavg()]
    cache = "none" if args.no_bytecode else os.environ.get("PYTHONPYCACHEPREFIX", "default")
    print(f"N={args.messages} stuck (held), runs={args.runs}, {os.cpu_count()} CPUs,"
          f" load average {load_avg}, bytecode cache: {cache}")  # fmt: skip
    print(f"{'command':<24} {'median s':>9} {'cpu s':>7} {'max s':>7} {'peak MiB':>9}"
          f" {'output':>10}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<24} {r['median_seconds']:>9.3f} {r['median_cpu_seconds']:>7.3f}"
              f" {r['max_seconds']:>7.3f} {r['peak_rss_mib']:>9.0f}"
              f" {int(r['output_bytes']):>10}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"messages": args.messages, "loadavg": load_avg, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
