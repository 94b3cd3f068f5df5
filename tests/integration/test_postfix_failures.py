"""A probe that fails marks itself down and loses nothing; bad output is counted, not fatal.

Where a real Postfix cannot produce the fault (garbage output, a hung ``postqueue``, a file
that vanishes between listing and reading), a *fake* ``postqueue`` script stands in for it:
each is named ``fake_postqueue_*`` and says what it injects.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.errors import SourceCommandFailed, SourceTimeout, SourceUnavailable
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.factory import build_sources
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

pytestmark = pytest.mark.postfix


def _fake_postqueue(directory: Path, name: str, body: str) -> str:
    script = directory / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture(name="scanner")
def fixture_scanner(tmp_store_path: Path) -> Scanner:
    """A scanner over a fresh store with the shipped taxonomy."""
    return Scanner(load(None).classifier(), Store(tmp_store_path))


class TestProbeFailures:
    """Each kind of failure is a typed error, recorded as a failed scan."""

    async def test_stopped_postfix_is_seen_and_flagged(
        self, postfix: PrivatePostfix, scanner: Scanner
    ) -> None:
        """With Postfix stopped, root's postqueue still reads the queue: kept, with a warning."""
        postfix.inject([make_message("Emergency recall X2")])
        postfix.wait_for_queue(1)
        source = PostfixSource("mta1", config_dir=postfix.config_dir)
        assert (await scanner.scan(source)).observation.warnings == ()  # type: ignore[union-attr]
        postfix.stop()
        try:
            outcome = await scanner.scan(source)
        finally:
            postfix.start()
        assert outcome.ok
        assert len(outcome.verdicts) == 1
        assert outcome.observation is not None
        assert any("Mail system is down" in w for w in outcome.observation.warnings)
        assert any("Mail system is down" in w for w in scanner.store.last_scans()["mta1"].warnings)

    async def test_failing_postqueue_is_recorded_and_loses_nothing(
        self, postfix: PrivatePostfix, scanner: Scanner, tmp_path: Path
    ) -> None:
        """A postqueue that exits non-zero fails the probe; stored messages stay queued."""
        postfix.inject([make_message("Emergency recall X3")])
        postfix.wait_for_queue(1)
        source = PostfixSource("mta1", config_dir=postfix.config_dir, full_listing_every=0)
        assert (await scanner.scan(source)).ok
        source.config_dir = tmp_path / "no-such-config"
        with pytest.raises(SourceCommandFailed) as raised:
            await source.probe()
        assert raised.value.returncode != 0
        assert "postqueue exited" in str(raised.value)
        failed = await scanner.scan(source)
        assert not failed.ok
        assert failed.error_kind == "SourceCommandFailed"
        assert len(scanner.store.queued("mta1")) == 1  # nothing marked as left
        assert not scanner.store.last_scans()["mta1"].ok
        source.config_dir = postfix.config_dir
        recovered = await scanner.scan(source)
        assert recovered.ok
        assert len(recovered.verdicts) == 1
        assert scanner.store.last_scans()["mta1"].ok

    async def test_missing_command_is_unavailable(self, tmp_path: Path) -> None:
        """A postqueue that does not exist raises SourceUnavailable (a ConnectionError)."""
        source = PostfixSource(
            "mta1", postqueue=str(tmp_path / "no-such-postqueue"), full_listing_every=0
        )
        with pytest.raises(SourceUnavailable) as raised:
            await source.probe()
        assert isinstance(raised.value, ConnectionError)

    async def test_hung_postqueue_times_out(self, tmp_path: Path) -> None:
        """fake_postqueue_hangs never answers: the probe times out and kills it."""
        fake = _fake_postqueue(tmp_path, "fake_postqueue_hangs", "exec sleep 30")
        source = PostfixSource("mta1", postqueue=fake, timeout=0.3, full_listing_every=0)
        started = datetime.now(UTC)
        with pytest.raises(SourceTimeout) as raised:
            await source.probe()
        assert isinstance(raised.value, TimeoutError)
        assert (datetime.now(UTC) - started).total_seconds() < 5

    async def test_unreadable_queue_is_unavailable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A queue file mailwatch may not open makes the probe SourceUnavailable, says why."""
        line = (
            '{"queue_name": "deferred", "queue_id": "NOPERM1", "arrival_time": 1795953996,'
            ' "message_size": 10, "sender": "a@b.example", "recipients": []}'
        )
        fake = _fake_postqueue(tmp_path, "fake_postqueue_one", f"echo '{line}'")
        source = PostfixSource("mta1", postqueue=fake, queue_dir=tmp_path, full_listing_every=0)
        real_open = os.open

        def refuse(path: str, flags: int, *args: int) -> int:
            if "NOPERM1" in path:
                raise PermissionError(13, "Permission denied", path)
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", refuse)
        with pytest.raises(SourceUnavailable, match="cannot read queue files") as raised:
            await source.probe()
        assert "root" in str(raised.value)


class TestBadOutput:
    """Garbage from postqueue is counted and skipped; the real lines still count."""

    async def test_garbage_lines_are_counted_not_fatal(
        self, postfix: PrivatePostfix, scanner: Scanner, tmp_path: Path
    ) -> None:
        """fake_postqueue_garbage interleaves broken lines with the real queue listing."""
        postfix.inject([make_message("Part A recall request"), make_message("Court results")])
        postfix.wait_for_queue(2)
        real = postfix.postqueue("-j").splitlines()
        garbage = ['{"queue_name": "deferred", "queue_id": "TRUNC', "not json at all",
                   "[1, 2, 3]", '{"queue_name": "deferred"}', "\xff\xfe binary"]  # fmt: skip
        listing = tmp_path / "listing.jsonl"
        listing.write_text("\n".join([garbage[0], real[0], *garbage[1:], real[1]]) + "\n")
        fake = _fake_postqueue(tmp_path, "fake_postqueue_garbage", f"cat {listing}")
        source = PostfixSource(
            "mta1", postqueue=fake, queue_dir=postfix.queue_dir, full_listing_every=0
        )
        outcome = await scanner.scan(source)
        assert outcome.ok
        assert outcome.observation is not None
        assert outcome.observation.malformed == len(garbage)
        assert {v.classification.name for v in outcome.verdicts} == {
            "recall_standard",
            "court_result",
        }

    async def test_vanished_queue_file_is_not_fatal_and_retried(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """A listed message whose file is gone is reported without headers and read next time."""
        line = (
            '{"queue_name": "deferred", "queue_id": "ABSENT1", "arrival_time": 1795953996,'
            ' "message_size": 10, "sender": "a@b.example", "recipients": []}'
        )
        fake = _fake_postqueue(tmp_path, "fake_postqueue_vanished", f"echo '{line}'")
        source = PostfixSource(
            "mta1", postqueue=fake, queue_dir=postfix.queue_dir, full_listing_every=0
        )
        first = await source.probe()
        assert first.headers_read == 0
        assert first.messages[0].subject == ""
        assert "mta1/ABSENT1/1795953996" not in source.header_cache

    async def test_reused_queue_id_is_a_new_message(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """The same queue id with a new arrival time is a different message: headers re-read."""
        postfix.inject([make_message("Court results")])
        (entry,) = postfix.wait_for_queue(1)
        real = postfix.postqueue("-j").strip()
        listing = tmp_path / "listing.jsonl"
        listing.write_text(real + "\n")
        fake = _fake_postqueue(tmp_path, "fake_postqueue_reuse", f"cat {listing}")
        source = PostfixSource(
            "mta1", postqueue=fake, queue_dir=postfix.queue_dir, full_listing_every=0
        )
        assert (await source.probe()).headers_read == 1
        assert (await source.probe()).headers_read == 0
        arrival = int(str(entry["arrival_time"]))
        listing.write_text(real.replace(str(arrival), str(arrival + 3600)) + "\n")
        again = await source.probe()
        assert again.headers_read == 1
        assert again.messages[0].key == f"mta1/{entry['queue_id']}/{arrival + 3600}"


class TestRestart:
    """A restarted mailwatch does not re-read what it already knows."""

    async def test_restart_primes_header_cache_from_store(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """After a restart the first scan reads no headers for already-known messages."""
        postfix.inject([make_message(f"Breach referral {i}") for i in range(4)])
        postfix.wait_for_queue(4)
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            f'[store]\npath = "db.sqlite"\n[sources.mta1]\ntype = "postfix"\n'
            f'config_dir = "{postfix.config_dir}"\n'
        )
        settings = load(config)
        with Store(settings.store.path) as store:
            outcome = await Scanner(settings.classifier(), store).scan(
                build_sources(settings, store)[0]
            )
            assert outcome.observation is not None
            assert outcome.observation.headers_read == 4
        with Store(settings.store.path) as store:  # a new process, as far as mailwatch knows
            outcome = await Scanner(settings.classifier(), store).scan(
                build_sources(settings, store)[0]
            )
            assert outcome.observation is not None
            assert outcome.observation.headers_read == 0
            assert {v.classification.name for v in outcome.verdicts} == {"breach"}
