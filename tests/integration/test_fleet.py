"""The fleet on a real PostgreSQL: three agents with their own real Postfix push into one cluster.

The fleet's answer is checked against what each agent sees locally.

Drills: the database stopped for several scans then started (nothing lost, nothing
duplicated), the local queue hitting its bound (collapsed, then resynced), an agent gone
silent (its sources turn unknown), two pushes racing on the same rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from mailwatch.app import fleet_queries, queries
from mailwatch.app.fleet_push import FleetPusher
from mailwatch.app.scanner import Scanner
from mailwatch.cli import cli
from mailwatch.config.fleet import FleetConfig
from mailwatch.config.settings import load
from mailwatch.core.changes import ChangeSet, Heartbeat, Upsert
from mailwatch.core.model import Priority
from mailwatch.errors import FleetUnavailable
from mailwatch.fleet import schema
from mailwatch.fleet.connect import connect
from mailwatch.fleet.reader import FleetReader
from mailwatch.fleet.writer import open_pool, push
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sandbox.postgres import PrivatePostgres
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

LATER = datetime.now(UTC) + timedelta(days=3)
"""The agents' clock: three days on, so every queued P1 message is past its SLA."""
P1 = ["Emergency recall - X100001", "Part A recall request X100002", "MAPPA level 3 minutes"]
OTHER = ["Court results for Monday", "Team lunch"]
WINDOW = 86400.0


@dataclass
class Agent:
    """One mailwatch agent: its own Postfix, SQLite store, scanner and fleet pusher."""

    name: str
    postfix: PrivatePostfix
    store: Store
    scanner: Scanner
    source: PostfixSource
    pusher: FleetPusher

    async def scan(self) -> None:
        """One scan (queued for the fleet; never waits for it)."""
        outcome = await self.scanner.scan(self.source)
        assert outcome.ok, outcome.error

    async def scan_and_push(self) -> None:
        """One scan, then push what is queued."""
        await self.scan()
        await self.pusher.drain()

    def local(self, *, stuck_only: bool = True) -> set[tuple[Any, ...]]:
        """This agent's own ``stuck`` answer, with sources named as the fleet names them."""
        items, _ = queries.messages(
            self.store, LATER, queries.MessageFilter(stuck_only), undeliverable_for=WINDOW
        )
        return {_row(i | {"source": f"{self.name}/{i['source']}"}) for i in items}


def _row(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item["source"], item["id"], item["queue_id"], item["class"], item["priority"],
            item["queue"], item["stuck"], item["reason_category"],
            tuple(item["recipient_domains"]))  # fmt: skip


def _config(url: str, agent: str, **overrides: Any) -> FleetConfig:
    config = FleetConfig.model_validate({"url": url, "agent": agent, "timeout": "2s"})
    return config.model_copy(update=overrides)


@pytest.fixture(name="agents")
async def fixture_agents(tmp_path: Path, fleet_url: str) -> AsyncIterator[list[Agent]]:
    """Three agents with their own real Postfix instances, and a migrated fleet database."""
    with connect(_config(fleet_url, "x")) as db:
        assert schema.migrate(db) == list(range(1, len(schema.MIGRATIONS) + 1))
    settings = load(None)
    agents: list[Agent] = []
    try:
        for n in (1, 2, 3):
            postfix = PrivatePostfix.create(tmp_path / f"postfix{n}")
            postfix.start()
            store = Store(tmp_path / f"agent{n}.db")
            scanner = Scanner(settings.classifier(), store, clock=lambda: LATER)
            source = PostfixSource("mta", config_dir=postfix.config_dir, clock=lambda: LATER)
            pusher = FleetPusher(_config(fleet_url, f"agent{n}"), store, scanner.resync,
                                 clock=lambda: LATER)  # fmt: skip
            scanner.sink = pusher
            agents.append(Agent(f"agent{n}", postfix, store, scanner, source, pusher))
        yield agents
    finally:
        for agent in agents:
            await agent.pusher.close()
            agent.store.close()
            agent.postfix.stop()


def _fill(agent: Agent, subjects: list[str], to: str = "ppcs@justice.example") -> None:
    agent.postfix.inject([make_message(s, to=to) for s in subjects])


def fleet(url: str, *, stuck_only: bool = True, **filters: Any) -> set[tuple[Any, ...]]:
    """``stuck --fleet``'s answer, read from PostgreSQL and judged by the core."""
    with psycopg.connect(url) as db:
        items, _ = fleet_queries.messages(
            FleetReader(db), LATER, queries.MessageFilter(stuck_only, **filters),
            undeliverable_for=WINDOW,
        )  # fmt: skip
    return {_row(i) for i in items}


def fleet_rows(url: str, agent: str) -> list[tuple[Any, ...]]:
    """Every message row of ``agent`` in the fleet: (key, status)."""
    with psycopg.connect(url) as db:
        return db.execute(
            "SELECT key, status FROM fleet_messages WHERE agent = %s ORDER BY key", (agent,)
        ).fetchall()


def local_rows(agent: Agent) -> list[tuple[Any, ...]]:
    """The agent's queued messages as (key, 'queued'): what the fleet must hold as queued."""
    return sorted((m.key, "queued") for m in agent.store.queued())


async def test_fleet_answer_is_the_union_of_every_agents(
    agents: list[Agent], fleet_url: str
) -> None:
    """Three agents with different queues: ``stuck --fleet`` equals the union of their ``stuck``."""
    _fill(agents[0], P1[:2] + OTHER)
    _fill(agents[1], P1[2:], to="court@justice.example")
    _fill(agents[2], OTHER[:1])
    for agent, count in zip(agents, (4, 1, 1), strict=True):
        agent.postfix.wait_for_queue(count)
        await agent.scan_and_push()
    union = set().union(*(a.local() for a in agents))
    assert len(union) == 6  # everything is past its SLA three days on
    assert fleet(fleet_url) == union
    p1 = {r for r in union if r[4] == "P1"}
    assert len(p1) == 3
    assert fleet(fleet_url, priority=Priority.P1) == p1
    assert {r[1] for r in fleet(fleet_url, source="agent2")} == {r[1] for r in agents[1].local()}


async def test_partition_loses_nothing_and_duplicates_nothing(
    agents: list[Agent], fleet_url: str, postgres_instance: PrivatePostgres
) -> None:
    """Database down for several scans while the queue changes, then back: rows match exactly."""
    agent = agents[0]
    _fill(agent, P1 + OTHER)
    agent.postfix.wait_for_queue(5)
    await agent.scan_and_push()
    assert fleet_rows(fleet_url, "agent1") == local_rows(agent)

    postgres_instance.stop()
    try:
        _fill(agent, ["Risk escalation - RoSH increased"])
        agent.postfix.wait_for_queue(6)
        await agent.scan()  # scans go on: the change set is queued locally
        with pytest.raises(FleetUnavailable):
            await agent.pusher.drain()
        gone = agent.postfix.queue()[0]["queue_id"]
        agent.postfix.postsuper("-d", str(gone))
        await agent.scan()
        _fill(agent, ["Court results for Tuesday"])
        agent.postfix.wait_for_queue(6)
        await agent.scan()
        assert agent.store.fleet_backlog()[0] == 3  # three scans queued, in order
    finally:
        postgres_instance.start()
    await agent.pusher.drain()
    assert agent.store.fleet_backlog() == (0, 0)
    queued = [r for r in fleet_rows(fleet_url, "agent1") if r[1] == "queued"]
    assert queued == local_rows(agent)
    everything = fleet_rows(fleet_url, "agent1")
    assert len(everything) == len({k for k, _ in everything}) == 7  # one left, none twice
    assert fleet(fleet_url) == agent.local()


async def test_a_full_queue_collapses_to_a_resync(
    agents: list[Agent], fleet_url: str, postgres_instance: PrivatePostgres
) -> None:
    """Past its bound the local queue keeps no change sets but a resync: nothing is lost.

    The removal dropped by the collapse comes back through the full change set that follows.
    """
    agent = agents[1]
    _fill(agent, P1 + OTHER)
    agent.postfix.wait_for_queue(5)
    await agent.scan_and_push()
    agent.pusher.config = agent.pusher.config.model_copy(update={"queue_limit": 4})
    postgres_instance.stop()
    try:
        agent.postfix.postsuper("-d", str(agent.postfix.queue()[0]["queue_id"]))
        _fill(agent, ["Court results for Tuesday", "Team drinks", "Risk escalation - RoSH"])
        agent.postfix.wait_for_queue(7)
        await agent.scan()  # 3 new + 1 gone + heartbeat = 5 rows > 4: collapsed
        assert agent.store.fleet_backlog() == (0, 0)
        assert agent.store.fleet_resyncs() == ["mta"]
        await agent.scan()  # the resync: a full change set (too big again: collapsed again)
    finally:
        postgres_instance.start()
    agent.pusher.config = agent.pusher.config.model_copy(update={"queue_limit": 100_000})
    await agent.scan()  # full again, and now queued
    await agent.pusher.drain()
    assert agent.store.fleet_resyncs() == []
    assert [r for r in fleet_rows(fleet_url, "agent2") if r[1] == "queued"] == local_rows(agent)
    assert len(fleet_rows(fleet_url, "agent2")) == 8  # the deleted one is there, as left
    assert fleet(fleet_url) == agent.local()


async def test_a_silent_agent_turns_unknown_never_zero(agents: list[Agent], fleet_url: str) -> None:
    """An agent that stops pushing: its sources are unknown after stale_after, stuck not known."""
    for agent in agents[:2]:
        await agent.scan_and_push()
    with psycopg.connect(fleet_url) as db:
        db.execute(
            "UPDATE fleet_heartbeats SET last_scan = last_scan - 3600 WHERE agent = 'agent2'"
        )
        items = fleet_queries.status(
            FleetReader(db), LATER, stale_after=300, undeliverable_for=WINDOW
        )
    states = {(i["agent"], i["source"]): (i["state"], i["stuck"]) for i in items}
    assert states == {("agent1", "mta"): ("ok", 0), ("agent2", "mta"): ("unknown", None)}
    assert "UNKNOWN" in fleet_queries.status_lines(items)[1]


async def test_two_pushes_racing_on_the_same_rows(fleet_url: str) -> None:
    """The same change sets pushed concurrently on two connections leave the same rows once."""
    with connect(_config(fleet_url, "x")) as db:
        schema.migrate(db)
        assert schema.migrate(db) == []  # idempotent
    at = LATER.timestamp()
    rows = tuple(
        Upsert("mta", f"Q{i:04d}", at - i, f"k{i}", "deferred", 100, None, "general", 4,
               "default", at + 60, None, None, ("justice.example",), None, at)
        for i in range(300)
    )  # fmt: skip
    changes = [ChangeSet("mta", Heartbeat("mta", at + n, ok=True, messages=300), rows,
                         full=n == 0) for n in range(3)]  # fmt: skip
    config = _config(fleet_url, "racer")
    pools = [open_pool(config), open_pool(config)]
    for pool in pools:
        await pool.open()
    try:
        await asyncio.gather(*(push(p, "racer", changes) for p in pools))
        await asyncio.gather(*(push(p, "racer", changes[::-1]) for p in pools))
    finally:
        for pool in pools:
            await pool.close()
    with psycopg.connect(fleet_url) as db:
        count, keys, queued = db.execute(
            "SELECT count(*), count(DISTINCT key), count(*) FILTER (WHERE status = 'queued')"
            " FROM fleet_messages WHERE agent = 'racer'"
        ).fetchone() or (0, 0, 0)
        (last,) = db.execute("SELECT last_scan FROM fleet_heartbeats").fetchone() or (0,)
    assert count == keys == queued == 300
    assert last == at + 2  # replaying an older heartbeat never moved it back


def test_cli_migrate_status_and_stuck_fleet(tmp_path: Path, fleet_url: str) -> None:
    """``fleet migrate`` twice, ``fleet status`` and ``stuck --fleet`` on an empty fleet."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f'[fleet]\nurl = "{fleet_url}"\nagent = "cli"\n', encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(cli, ["-c", str(config), "fleet", "migrate"])
    assert first.exit_code == 0, first.output
    assert "applied 1" in first.output
    again = runner.invoke(cli, ["-c", str(config), "fleet", "migrate"])
    assert f"up to date (version {len(schema.MIGRATIONS)})" in again.output
    status = runner.invoke(cli, ["-c", str(config), "fleet", "status"])
    assert status.exit_code == 0, status.output
    assert "no agent has pushed yet" in status.output
    stuck = runner.invoke(cli, ["-c", str(config), "stuck", "--fleet", "--priority", "P1"])
    assert stuck.exit_code == 0, stuck.output
    assert "nothing stuck" in stuck.output


def test_cli_scan_pushes_or_queues(
    tmp_path: Path, fleet_url: str, postfix: PrivatePostfix, postgres_instance: PrivatePostgres
) -> None:
    """``mailwatch scan`` with [fleet] pushes its changes; with the database down it queues them."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f'[store]\npath = "mw.db"\n[fleet]\nurl = "{fleet_url}"\nagent = "cron"\ntimeout = "2s"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["-c", str(config), "fleet", "migrate"]).exit_code == 0
    postfix.inject([make_message(s) for s in P1[:2]])
    postfix.wait_for_queue(2)
    assert runner.invoke(cli, ["-c", str(config), "scan"]).exit_code == 0
    assert [s for _, s in fleet_rows(fleet_url, "cron")] == ["queued", "queued"]
    postgres_instance.stop()
    try:
        postfix.inject([make_message(P1[2])])
        postfix.wait_for_queue(3)
        down = runner.invoke(cli, ["-c", str(config), "scan"])
        assert down.exit_code == 0
        assert "not pushed now (queued locally)" in down.stderr
    finally:
        postgres_instance.start()
    assert runner.invoke(cli, ["-c", str(config), "scan"]).exit_code == 0
    with Store(tmp_path / "mw.db") as store:
        assert store.fleet_backlog() == (0, 0)
        assert fleet_rows(fleet_url, "cron") == sorted((m.key, "queued") for m in store.queued())
    page = runner.invoke(cli, ["-c", str(config), "stuck", "--fleet", "--all", "--limit", "2",
                               "--json"])  # fmt: skip
    assert page.exit_code == 0, page.output
    assert len(json.loads(page.stdout)) == 2
    assert page.stderr.startswith("1 more; use --limit N")
