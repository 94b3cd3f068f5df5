"""The walking skeleton on a real Postfix: source → classify → SLA → store, then delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.headers import decode_header_value
from mailwatch.core.model import Status
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.factory import build_sources
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

pytestmark = pytest.mark.postfix

SUBJECTS = {
    "OFFICIAL-SENSITIVE: Emergency recall - X100001": ("recall_emergency", "P1"),
    "RE: Part A recall request X100002": ("recall_standard", "P1"),
    "=?utf-8?q?Risk_escalation_=E2=80=93_RoSH_increased?=": ("risk_escalation", "P1"),
    "MAPPA level 3 minutes": ("mappa", "P1"),
    "Court results for Monday": ("court_result", "P2"),
    "Recall: Team lunch": ("general", "P4"),
}


class _Sink:
    """An SMTP sink that accepts everything (the relay Postfix was failing to reach)."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Accept the message."""
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def _scanner(store: Store, now: datetime | None = None) -> tuple[Scanner, PostfixSource, Any]:
    settings = load(None)
    source = PostfixSource("mta1", config_dir=None, clock=lambda: now or datetime.now(UTC))
    return Scanner(settings.classifier(), store), source, settings


class TestQueueWatch:
    """Messages injected over SMTP are found, classified and judged."""

    async def test_scan_finds_classifies_and_records(
        self, postfix: PrivatePostfix, tmp_store_path: Path
    ) -> None:
        """Each injected message is found with its class, queue and delay reason."""
        postfix.inject([make_message(s) for s in SUBJECTS])
        postfix.wait_for_queue(len(SUBJECTS))
        with Store(tmp_store_path) as store:
            scanner, source, _ = _scanner(store)
            source.config_dir = postfix.config_dir
            outcome = await scanner.scan(source)
            assert outcome.ok, outcome.error
            assert outcome.observation is not None
            assert outcome.observation.headers_read == len(SUBJECTS)
            # Stored messages' headers leave memory (Headers.release): read them from the store.
            by_subject = {store.get(v.message.key).headers.get("Subject"): v
                          for v in outcome.verdicts}  # fmt: skip
            for subject, (cls, prio) in SUBJECTS.items():
                verdict = by_subject[decode_header_value(subject)]
                assert (verdict.classification.name, str(verdict.classification.priority)) == (
                    cls,
                    prio,
                )
                assert verdict.message.queue == "deferred"
                assert "Connection refused" in (verdict.message.delay_reason or "")
                assert not verdict.stuck  # just arrived
            stored = store.queued("mta1")
            assert {m.class_name for m in stored} == {c for c, _ in SUBJECTS.values()}
            emergency = next(m for m in stored if m.class_name == "recall_emergency")
            assert emergency.marking == "OFFICIAL-SENSITIVE"
            assert emergency.key.startswith(f"mta1/{emergency.queue_id}/")

    async def test_past_sla_is_stuck_with_mta_reason(
        self, postfix: PrivatePostfix, tmp_store_path: Path
    ) -> None:
        """At a `now` past the SLA the emergency recall is stuck, with Postfix's delay reason."""
        postfix.inject([make_message("Emergency recall X1"), make_message("Team lunch")])
        postfix.wait_for_queue(2)
        later = datetime.now(UTC) + timedelta(minutes=11)
        with Store(tmp_store_path) as store:
            scanner, source, _ = _scanner(store, now=later)
            source.config_dir = postfix.config_dir
            outcome = await scanner.scan(source)
        stuck = {v.classification.name: v for v in outcome.verdicts if v.stuck}
        assert set(stuck) == {"recall_emergency"}  # general's SLA is 4h
        assert "Connection refused" in (stuck["recall_emergency"].reason or "")
        counts = {c.name: c for c in outcome.counts}
        assert counts["recall_emergency"].stuck == 1
        assert counts["general"].total == 1
        assert counts["general"].stuck == 0
        assert counts["safeguarding"].total == 0  # zero rows are present

    async def test_held_message_is_stuck_at_once(
        self, postfix: PrivatePostfix, tmp_store_path: Path
    ) -> None:
        """A message in the hold queue is stuck immediately, reason "held"."""
        postfix.inject([make_message("Court results")])
        (entry,) = postfix.wait_for_queue(1)
        postfix.postsuper("-h", str(entry["queue_id"]))
        postfix.wait_for_queue(1)
        with Store(tmp_store_path) as store:
            scanner, source, _ = _scanner(store)
            source.config_dir = postfix.config_dir
            outcome = await scanner.scan(source)
        (verdict,) = outcome.verdicts
        assert verdict.message.queue == "hold"
        assert verdict.stuck
        assert verdict.reason == "held"


class TestRescanAndDelivery:
    """Rescans cost nothing per unchanged message; delivered mail is marked as left."""

    async def test_rescan_reads_no_headers_and_writes_nothing(
        self, postfix: PrivatePostfix, tmp_store_path: Path
    ) -> None:
        """A rescan of an unchanged queue reads no headers and writes no message rows."""
        postfix.inject([make_message(f"MAPPA referral {i}") for i in range(5)])
        postfix.wait_for_queue(5)
        with Store(tmp_store_path) as store:
            scanner, source, _ = _scanner(store)
            source.config_dir = postfix.config_dir
            await scanner.scan(source)
            before = store._db.total_changes
            outcome = await scanner.scan(source)
            assert outcome.observation is not None
            assert outcome.observation.headers_read == 0
            # one scan row + one class_counts row per class; no message rows
            assert store._db.total_changes - before == 1 + len(outcome.counts)

    async def test_delivered_messages_are_marked_left(
        self, postfix: PrivatePostfix, tmp_store_path: Path
    ) -> None:
        """After a sink opens on the relay port and the queue is flushed, messages are 'left'."""
        postfix.inject([make_message(s) for s in list(SUBJECTS)[:3]])
        postfix.wait_for_queue(3)
        with Store(tmp_store_path) as store:
            scanner, source, _ = _scanner(store)
            source.config_dir = postfix.config_dir
            first = await scanner.scan(source)
            keys = {v.message.key for v in first.verdicts}
            sink = _Sink()
            controller = Controller(sink, hostname="127.0.0.1", port=postfix.relay_port)
            controller.start()
            try:
                postfix.flush()
                postfix.wait_for_queue(0, timeout=30)
            finally:
                controller.stop()
            assert len(sink.received) == 3
            second = await scanner.scan(source)
            assert second.ok
            assert second.verdicts == ()
            for key in keys:
                message = store.get(key)
                assert message.status is Status.LEFT
                assert message.left_at is not None
            assert store.queued("mta1") == []


class TestKeptHeaders:
    """A configured source keeps the headers mailwatch uses and those class rules name."""

    async def test_only_essential_and_rule_headers_are_kept(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """A header a rule names is kept (and matched); other extra headers are not stored."""
        extra = {"X-Case-Reference": "A1234BC", "X-Unrelated": "dropped", "Importance": "high"}
        postfix.inject([make_message("Team lunch", extra=extra)])
        postfix.wait_for_queue(1)
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            f'[store]\npath = "db.sqlite"\n[sources.mta1]\ntype = "postfix"\n'
            f'config_dir = "{postfix.config_dir}"\n'
            '[classes.case_ref]\npriority = "P1"\nstuck_after = "1h"\n'
            '[[classes.case_ref.match]]\nheaders = [{ name = "x-case-reference", regex = "^A" }]\n'
        )
        settings = load(config)
        with Store(settings.store.path) as store:
            (source,) = build_sources(settings, store)
            outcome = await Scanner(settings.classifier(), store).scan(source)
            (verdict,) = outcome.verdicts
            stored = store.queued("mta1")[0]
        assert verdict.classification.name == "case_ref"
        names = {name for name, _ in stored.headers.items}
        assert {"From", "To", "Subject", "Importance", "X-Case-Reference"} <= names
        assert not names & {"X-Unrelated", "Received", "MIME-Version", "Content-Type"}
        assert verdict.message.headers.released  # classified and stored: out of memory
        assert stored.headers == verdict.message.headers  # still equal (and hashed the same)
