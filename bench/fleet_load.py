"""The fleet under load: N simulated agents x M messages pushed through one PostgreSQL.

    .venv/bin/python bench/fleet_load.py [--agents 50] [--messages 10000] [--changed 0.01]

Starts a private PostgreSQL 15 (mailwatch/sandbox/postgres.py: loopback, fsync off, like the
tests), migrates it, then:

1. every agent pushes its first, full change set (M upserts, one transaction, in batches of
   ``[fleet] batch_size`` = 2,000 rows) through mailwatch's own writer: push latency per agent
   (p50, max) and rows/s over the whole load;
2. every agent pushes a typical scan's diff (``--changed`` of its messages new, as many left):
   push latency;
3. ``stuck --fleet --priority P1`` (select in SQL, decode, judge with the core; the same code
   path as the command) at N x M rows, best of 5, and ``fleet status``;
4. the database's size.

Simulated agents run in one process, one after another (push latency is per agent; 50 agents
pushing at once would contend for the same 2 cores here). 1 % of messages are P1 (most past their
deadline), as are the diff's new ones. Not a test (no timed assertions).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from mailwatch.app import fleet_queries, queries
from mailwatch.config.fleet import FleetConfig
from mailwatch.core.changes import ChangeSet, Heartbeat, Removal, Upsert
from mailwatch.core.model import Priority
from mailwatch.fleet import schema
from mailwatch.fleet.reader import FleetReader
from mailwatch.fleet.writer import open_pool, push
from mailwatch.sandbox.postgres import PrivatePostgres

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
DOMAINS = ("justice.example", "probation.example", "police.example", "courts.example")


def _message(agent: int, i: int, at: float) -> Upsert:
    p1 = i % 100 == 0
    arrival = at - 60 * (i % 600)
    deadline = arrival + (1800 if p1 else 86400) - (3600 if p1 and i % 200 == 0 else 0)
    return Upsert(
        "mta", f"{agent:02d}{i:08X}", arrival, f"mta/{agent:02d}{i:08X}/{arrival:.0f}",
        "deferred", 4096, None, "recall_emergency" if p1 else "general", 1 if p1 else 4,
        "subject" if p1 else "default", deadline, "connect to relay: Connection refused",
        "connection", (DOMAINS[i % 4],), None, arrival,
    )  # fmt: skip


async def load(url: str, agents: int, messages: int, changed: float) -> dict[str, float]:
    """Pushes and measurements; returns the figures."""
    config = FleetConfig(url=url, agent="bench")
    pool = open_pool(config)
    await pool.open()
    at = NOW.timestamp()
    first: list[float] = []
    t_all = time.perf_counter()
    for a in range(agents):
        rows = tuple(_message(a, i, at) for i in range(messages))
        change = ChangeSet("mta", Heartbeat("mta", at, ok=True, messages=messages), rows, full=True)
        t0 = time.perf_counter()
        await push(pool, f"agent{a:02d}", [change], config.batch_size)
        first.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    diffs: list[float] = []
    step = max(1, int(1 / changed)) if changed else 0
    for a in range(agents):
        new = tuple(
            _message(a, messages + i, at + 60) for i in range(0, messages, step or messages)
        )
        gone = tuple(
            Removal("mta", f"{a:02d}{i:08X}", at - 60 * (i % 600), at + 60)
            for i in range(1, messages, step or messages)
        )
        change = ChangeSet("mta", Heartbeat("mta", at + 60, ok=True, messages=messages), new, gone)
        t0 = time.perf_counter()
        await push(pool, f"agent{a:02d}", [change], config.batch_size)
        diffs.append(time.perf_counter() - t0)
    await pool.close()
    return {
        "first_p50": statistics.median(first), "first_max": max(first),
        "rows_per_s": agents * messages / total, "load_s": total,
        "diff_p50": statistics.median(diffs), "diff_max": max(diffs),
        "diff_rows": len(new) + len(gone),
    }  # fmt: skip


def reads(url: str) -> dict[str, float]:
    """``stuck --fleet --priority P1`` and ``fleet status`` at the loaded size, best of 5."""
    wanted = queries.MessageFilter(True, None, Priority.P1, None, None)
    stuck, status, found = [], [], 0
    with psycopg.connect(url) as db:
        db.execute("ANALYZE")
        reader = FleetReader(db)
        for _ in range(5):
            t0 = time.perf_counter()
            items, _ = fleet_queries.messages(reader, NOW, wanted, undeliverable_for=86400)
            stuck.append(time.perf_counter() - t0)
            found = len(items)
            t0 = time.perf_counter()
            fleet_queries.status(reader, NOW, stale_after=300, undeliverable_for=86400)
            status.append(time.perf_counter() - t0)
        rows = db.execute("SELECT count(*) FROM fleet_messages").fetchone()
        size = db.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "stuck_p1_s": min(stuck), "stuck_p1_rows": found, "status_s": min(status),
        "rows": rows[0] if rows else 0, "db_mb": (size[0] if size else 0) / 2**20,
    }  # fmt: skip


def main() -> None:
    """Run the benchmark and print a Markdown table row."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = PrivatePostgres(Path(tmp) / "pg").create()
        try:
            with psycopg.connect(pg.url) as db:
                schema.migrate(db)
            pushed = asyncio.run(load(pg.url, args.agents, args.messages, args.changed))
            read = reads(pg.url)
        finally:
            pg.destroy()
    print(f"agents x messages: {args.agents} x {args.messages} = {read['rows']:.0f} rows")
    print(f"first push per agent ({args.messages} upserts): p50 {pushed['first_p50']*1000:.0f} ms,"
          f" max {pushed['first_max']*1000:.0f} ms; {pushed['rows_per_s']:.0f} rows/s"
          f" ({pushed['load_s']:.1f} s in all)")  # fmt: skip
    print(f"diff push per agent ({pushed['diff_rows']:.0f} rows): p50 {pushed['diff_p50']*1000:.1f}"
          f" ms, max {pushed['diff_max']*1000:.1f} ms")  # fmt: skip
    print(f"stuck --fleet --priority P1: {read['stuck_p1_s']*1000:.0f} ms"
          f" ({read['stuck_p1_rows']:.0f} stuck P1 listed); fleet status:"
          f" {read['status_s']*1000:.0f} ms")  # fmt: skip
    print(f"database size: {read['db_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
