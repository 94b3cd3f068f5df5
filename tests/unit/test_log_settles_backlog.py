"""One truth between the mail log and the queue scan: a message the log says left is not counted.

The store marks a message left as soon as the mail log says ``removed``; the metrics and the
alert rules count the scanner's kept backlog. Before, that backlog still counted the message
(stuck, with its old delay reason) until the next scan of its queue no longer listed it, so
for up to a scan interval ``/metrics`` and the alerts disagreed with ``stuck`` and the API.

The sources here are named fakes (an in-memory listing and an in-memory log): what is tested
is what the scanner, the store and the service do with their observations. A real Postfix and
its real log are in ``tests/integration/test_destination_faults.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.app.scanner import Scanner
from mailwatch.app.service import Service
from mailwatch.config.settings import load
from mailwatch.core.model import (
    LogCursor,
    LogEvent,
    LogObservation,
    Message,
    QueueObservation,
    Recipient,
    Removed,
    Status,
)
from mailwatch.core.tracked import Backlog
from mailwatch.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
CLASSIFIER = load(None).classifier()


def _message(i: int) -> Message:
    return Message(
        f"mta1/Q{i:06X}/1", "mta1", f"Q{i:06X}", "hold" if i % 5 == 0 else "deferred",
        NOW - timedelta(hours=i), 1000, "om@probation.example",
        (Recipient("duty@ppcs.example", "connect to relay: Connection refused"),),
        subject="Emergency recall - A Person" if i % 2 else "Lunch",
    )  # fmt: skip


@dataclass
class FakeQueueSource:
    """A fake queue source: the listing it is given."""

    name: str = "mta1"
    messages: list[Message] = field(default_factory=list)

    async def probe(self) -> QueueObservation:
        """The current listing."""
        return QueueObservation(self.name, NOW, tuple(self.messages))


@dataclass
class FakeLogSource:
    """A fake mail-log source: hands out the events it is given, once."""

    name: str = "mta1_log"
    events: list[LogEvent] = field(default_factory=list)

    async def probe(self) -> LogObservation:
        """The events since the last probe, for ``mta1``."""
        events, self.events = self.events, []
        return LogObservation(self.name, NOW, (), outcomes=tuple(events), outcomes_for="mta1",
                              cursor=LogCursor(1, 100, "x"))  # fmt: skip


def _first(message: Message) -> tuple[object, datetime]:
    found = CLASSIFIER.classify(message)
    cls = next(c for c in CLASSIFIER.all_classes if c.name == found.name)
    return found, cls.stuck_after.deadline_after(message.arrival)


def _backlog(messages: list[Message]) -> Backlog:
    backlog = Backlog("mta1", CLASSIFIER.all_classes)
    backlog.update(messages, _first, NOW)  # type: ignore[arg-type]
    return backlog


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=30), st.sets(st.integers(min_value=0, max_value=35)))
def test_discarding_counts_as_a_listing_without_them_would(size: int, gone: set[int]) -> None:
    """After ``discard``, every count is what a backlog of the remaining messages gives."""
    messages = [_message(i) for i in range(size)]
    backlog = _backlog(messages)
    discarded = backlog.discard(f"mta1/Q{i:06X}/1" for i in gone)
    kept = [m for m in messages if int(m.queue_id[1:], 16) not in gone]
    assert {v.message.key for v in discarded} == {m.key for m in messages} - {m.key for m in kept}
    rest = _backlog(kept)
    assert backlog.queued() == rest.queued()
    assert backlog.stuck() == rest.stuck()
    assert backlog.counts() == rest.counts()
    assert backlog.verdicts.keys() == rest.verdicts.keys()


def test_discarded_leave_at_the_next_update_unless_listed_again() -> None:
    """The next scan reports them removed (store, fleet); listed again, they are new again."""
    messages = [_message(i) for i in range(6)]
    backlog = _backlog(messages)
    backlog.discard(["mta1/Q000001/1", "mta1/Q000002/1"])
    listed = [m for m in messages if m.queue_id != "Q000001"]
    delta = backlog.update(listed, _first, NOW)  # type: ignore[arg-type]
    assert [v.message.key for v in delta.removed] == ["mta1/Q000001/1"]
    assert [v.message.key for v in delta.added] == ["mta1/Q000002/1"]
    assert backlog.update(listed, _first, NOW).removed == ()  # type: ignore[arg-type]


def _scan(scanner: Scanner, source: object) -> None:
    async def scan() -> None:
        outcome = await scanner.scan(source)  # type: ignore[arg-type]
        assert outcome.ok, outcome.error

    asyncio.run(scan())


def test_the_kept_backlog_lets_go_when_the_log_says_removed(tmp_path: Path) -> None:
    """The scanner's verdicts and counts agree with the store right after the log's scan."""
    scanner = Scanner(CLASSIFIER, Store(tmp_path / "mw.db"), clock=lambda: NOW)
    queue, log = FakeQueueSource(messages=[_message(i) for i in range(8)]), FakeLogSource()
    _scan(scanner, queue)
    log.events = [Removed(NOW, "Q000003"), Removed(NOW, "Q000005"), Removed(NOW, "QNONE")]
    _scan(scanner, log)
    assert scanner.store.get("mta1/Q000003/1").status is Status.LEFT
    latest = scanner.latest("mta1")
    assert latest is not None
    assert {v.message.key for v in latest} == {m.key for m in scanner.store.queued("mta1")}
    assert len(latest) == 6
    assert sum(c.total for c in scanner.backlog("mta1").counts()) == 6
    del queue.messages[5], queue.messages[3]  # the queue catches up
    outcome = asyncio.run(scanner.scan(queue))
    assert outcome.changes is not None
    removed = {v.message.key for v in outcome.changes.removed}
    assert removed == {"mta1/Q000003/1", "mta1/Q000005/1"}
    assert {m.key for m in scanner.store.queued("mta1")} == {m.key for m in queue.messages}


def test_metrics_and_alerts_agree_with_the_store_before_the_next_queue_scan(
    tmp_path: Path,
) -> None:
    """The service's snapshot (``/metrics``) and situation (alerts) count what the store lists."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f"""
[store]
path = "{tmp_path / "mw.db"}"
[sources.mta1]
type = "postfix"
[sources.mta1_log]
type = "maillog"
path = "{tmp_path / "mail.log"}"
outcomes_for = "mta1"
""")
    queue, log = FakeQueueSource(messages=[_message(i) for i in range(10)]), FakeLogSource()
    with Store(tmp_path / "mw.db") as store:
        sources = [queue, log]
        service = Service(load(config), store, sources, clock=lambda: NOW)  # type: ignore[arg-type]
        asyncio.run(service.probe_once(queue))
        log.events = [Removed(NOW, f"Q{i:06X}") for i in (1, 3, 5, 7)]
        asyncio.run(service.probe_once(log))
        snapshot = service.snapshot
        assert snapshot is not None
        stored = store.queued("mta1")
        assert len(stored) == 6
        assert sum(n for (src, *_), n in snapshot.messages.items() if src == "mta1") == 6
        stuck_in_store = sum(1 for m in stored if m.queue == "hold" or m.deadline < NOW)
        assert sum(snapshot.stuck.values()) == stuck_in_store
        situation = service.situation()
        assert sum(len(view.stuck) for view in situation.classes) == stuck_in_store
