"""Final outcomes from the real Postfix log, joined to the messages seen in its queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from integration.conftest import RejectingSink
from mailwatch.app.scanner import Scanner
from mailwatch.app.service import Service
from mailwatch.cli import cli
from mailwatch.config.settings import load
from mailwatch.core.model import DeliveryStatus, Status
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store

pytestmark = pytest.mark.postfix


@pytest.fixture(name="sink")
def fixture_sink(postfix: PrivatePostfix) -> Iterator[None]:
    """The relay port answered by a sink that bounces one domain."""
    controller = Controller(RejectingSink(), hostname="127.0.0.1", port=postfix.relay_port)
    controller.start()
    yield
    controller.stop()


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path, postfix: PrivatePostfix) -> Path:
    """Queue and log sources of the test Postfix."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        f'[store]\npath = "db.sqlite"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
        f'[sources.mta1_log]\ntype = "maillog"\npath = "{postfix.log_path}"\n'
        'outcomes_for = "mta1"\n'
    )
    return path


async def _scan(config: Path) -> None:
    settings = load(config)
    with Store(settings.store.path) as store:
        outcomes = await Scanner(settings.classifier(), store).scan_all(
            build_sources(settings, store)
        )
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]


def _deliveries(config: Path) -> list[tuple[str, str | None, str]]:
    with Store(load(config).store.path) as store:
        return list(store._db.execute("SELECT queue_id, class, status FROM deliveries"))


class TestOutcomes:
    """Sent, bounced and expired, each joined to its tracked message."""

    async def test_outcomes_joined_and_bounce_is_stuck(
        self, postfix: PrivatePostfix, config: Path, request: pytest.FixtureRequest
    ) -> None:
        """A delivered, a bounced P1 and an expired message end with the right outcomes."""
        postfix.inject([
            make_message("Court results", to="clerk@ok.example"),
            make_message("Emergency recall X7", to="ppcs@reject.example"),
            make_message("Risk escalation Y", to="nps@ok.example"),
        ])  # fmt: skip
        entries = postfix.wait_for_queue(3)
        await _scan(config)  # queue seen: classes known
        with Store(load(config).store.path) as store:
            by_class = {m.class_name: m.queue_id for m in store.queued("mta1")}
        postfix.postsuper("-e", by_class["risk_escalation"])  # expire it at the next attempt
        request.getfixturevalue("sink")
        postfix.flush()
        postfix.wait_for_queue(0, timeout=30)
        await _scan(config)
        with Store(load(config).store.path) as store:
            court = store.get(by_class["court_result"])
            recall = store.get(by_class["recall_emergency"])
            risk = store.get(by_class["risk_escalation"])
        assert court.outcome is DeliveryStatus.SENT
        assert court.status is Status.LEFT
        assert court.delivery_delay is not None
        assert recall.outcome is DeliveryStatus.BOUNCED
        assert recall.dsn == "5.1.1"
        assert "User unknown" in (recall.outcome_text or "")
        assert risk.outcome is DeliveryStatus.EXPIRED
        assert len(entries) == 3
        result = CliRunner().invoke(cli, ["-c", str(config), "stuck", "--json"])
        stuck = {i["class"]: i for i in json.loads(result.stdout)}
        assert set(stuck) == {"recall_emergency", "risk_escalation"}  # sent mail is not stuck
        assert stuck["recall_emergency"]["reason"].startswith("bounced: ")
        assert "ppcs@" not in stuck["recall_emergency"]["reason"]  # address masked
        assert "***@reject.example" in stuck["recall_emergency"]["reason"]
        assert stuck["risk_escalation"]["reason"].startswith("expired")


class TestRestartAndRotation:
    """The persisted cursor means no line is counted twice or missed."""

    async def test_restart_and_real_logrotate(
        self, postfix: PrivatePostfix, config: Path, request: pytest.FixtureRequest
    ) -> None:
        """Rescans after a restart count nothing twice; `postfix logrotate` loses nothing."""
        request.getfixturevalue("sink")
        postfix.inject(
            [make_message(f"Court results {i}", to="clerk@ok.example") for i in range(2)]
        )
        postfix.wait_for_queue(0, timeout=30)
        await _scan(config)
        sent_before = [d for d in _deliveries(config) if d[2] == "sent"]
        await _scan(config)  # a "restarted" mailwatch: new sources from the stored cursor
        assert _deliveries(config) == _deliveries(config)
        assert [d for d in _deliveries(config) if d[2] == "sent"] == sent_before
        postfix.inject([make_message("Court results 3", to="clerk@ok.example")])
        postfix.wait_for_queue(0, timeout=30)
        postfix._run("postfix", "-c", str(postfix.config_dir), "logrotate")
        postfix.inject([make_message("Court results 4", to="clerk@ok.example")])
        postfix.wait_for_queue(0, timeout=30)
        await _scan(config)
        sent_after = [d for d in _deliveries(config) if d[2] == "sent"]
        assert len(sent_after) == len(sent_before) + 2
        assert len({d[0] for d in sent_after}) == len(sent_after)  # no queue id counted twice


class TestStoreFailure:
    """Outcomes read while the store cannot be written are read again once it can."""

    async def test_no_outcome_lost_or_counted_twice(
        self, postfix: PrivatePostfix, config: Path, request: pytest.FixtureRequest
    ) -> None:
        """Read-only store while the log holds the outcomes: source down; writable: all once.

        The read-only store is a fault-injection fake (``PRAGMA query_only``: every write
        fails with SQLITE_READONLY, as on a read-only mount); Postfix and its log are real.
        Before, the source's cursor had moved on, so the outcomes were never stored.
        """
        postfix.inject([
            *(make_message(f"Court results {i}", to="clerk@ok.example") for i in range(3)),
            make_message("Emergency recall Z9", to="ppcs@reject.example"),
        ])  # fmt: skip
        postfix.wait_for_queue(4)
        settings = load(config)
        with Store(settings.store.path) as store:
            sources = {s.name: s for s in build_sources(settings, store)}
            service = Service(settings, store, list(sources.values()))
            for source in sources.values():
                assert (await service.probe_once(source)).ok
            queue_ids = {m.queue_id for m in store.queued("mta1")}
            request.getfixturevalue("sink")
            postfix.flush()
            postfix.wait_for_queue(0, timeout=30)
            store._db.execute("PRAGMA query_only=ON")  # the fake: a read-only store

            failed = await service.probe_once(sources["mta1_log"])

            assert (failed.ok, failed.error) == (False, "store: read_only")
            assert not service.ready()
            store._db.execute("PRAGMA query_only=OFF")  # writable again
            assert (await service.probe_once(sources["mta1_log"])).ok
            assert (await service.probe_once(sources["mta1_log"])).ok  # nothing new: no change
            outcomes = {q: store.get(q).outcome for q in queue_ids}
        ours = [(q, status) for q, _, status in _deliveries(config) if q in queue_ids]
        assert len(queue_ids) == 4
        assert sorted(status for _, status in ours) == ["bounced", "sent", "sent", "sent"]
        assert len({q for q, _ in ours}) == 4  # each message's outcome stored exactly once
        assert sorted(str(o) for o in outcomes.values()) == ["bounced", "sent", "sent", "sent"]
