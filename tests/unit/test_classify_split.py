"""Many new messages classified on two cores (mailwatch.app.classify_split): same answers.

The helper is a real forked process. The broken helpers are fakes (``_fake_helper_*``) put in
place of the helper's work, for the faults a working helper never shows: it dies, answers
garbage, the wrong count or an unknown priority, or never answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from listing import FakeQueueSource
from reaping import pid_gone

from mailwatch.app import classify_split
from mailwatch.app.classify_split import classify_many
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.classify import Classifier
from mailwatch.core.model import Headers, Message, Recipient
from mailwatch.sources.forking import fork_helper
from mailwatch.sources.frames import pack, write_all
from mailwatch.store import Store

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SUBJECTS = ("Emergency recall - A Person", "Risk escalation: case X1", "MAPPA level 2 meeting",
            "Lunch on Friday", "RE: Court result for B Person", "Safeguarding concern")  # fmt: skip
SPLIT = 40  # SPLIT_FROM in these tests: a fork for 40 messages or more


def _message(i: int) -> Message:
    subject = f"{SUBJECTS[i % len(SUBJECTS)]} {i}"
    headers = Headers((("From", f"om{i}@probation.example"), ("Subject", subject)))
    return Message(
        f"mta1/Q{i:06X}/1", "mta1", f"Q{i:06X}", "deferred", NOW - timedelta(minutes=i), 900,
        "om@probation.example", (Recipient("duty@ppcs.example", None),), headers, subject,
    )  # fmt: skip


@pytest.fixture(name="classifier")
def fixture_classifier() -> Classifier:
    """The shipped taxonomy's classifier."""
    return load(None).classifier()


@pytest.fixture(name="forks")
def fixture_forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A low split threshold; the pids of the helpers forked (each must be reaped)."""
    monkeypatch.setattr(classify_split, "SPLIT_FROM", SPLIT)
    pids: list[int] = []

    def recording(serve: Any, pipe_size: int) -> tuple[int, int, int]:
        forked = fork_helper(serve, pipe_size)
        pids.append(forked[0])
        return forked

    monkeypatch.setattr(classify_split, "fork_helper", recording)
    yield pids
    assert all(pid_gone(pid) for pid in pids)


def _expected(classifier: Classifier, messages: list[Message]) -> dict[str, object]:
    return {m.key: classifier.classify(m) for m in messages}


def test_the_same_classes_as_one_by_one(classifier: Classifier, forks: list[int]) -> None:
    """Half classified by the helper, half here: the answers classifying here gives."""
    messages = [_message(i) for i in range(3 * SPLIT)]
    assert classify_many(classifier.classify, messages) == _expected(classifier, messages)
    assert len(forks) == 1


def test_a_small_batch_never_forks(classifier: Classifier, forks: list[int]) -> None:
    """Below the threshold everything is classified here."""
    messages = [_message(i) for i in range(SPLIT - 1)]
    assert classify_many(classifier.classify, messages) == _expected(classifier, messages)
    assert forks == []


def test_released_headers_are_left_to_the_caller(classifier: Classifier, forks: list[int]) -> None:
    """A message whose headers were released is left out, in either half."""
    messages = [_message(i) for i in range(2 * SPLIT)]
    released = {messages[1].key, messages[-1].key}
    for message in messages:
        if message.key in released:
            message.headers.release()
    found = classify_many(classifier.classify, messages)
    assert set(found) == {m.key for m in messages} - released
    assert len(forks) == 1


def _fake_helper_dies(*_args: Any) -> None:
    raise RuntimeError("the helper died")


def _fake_helper_answers_too_few(_classify: Any, messages: Any, write_fd: int) -> None:
    write_all(write_fd, pack([("general", 4, "default", None)] * (len(messages) - 1)))


def _fake_helper_answers_unknown_priority(_classify: Any, messages: Any, write_fd: int) -> None:
    write_all(write_fd, pack([("general", 99, "default", None)] * len(messages)))


def _fake_helper_garbles(_classify: Any, _messages: Any, write_fd: int) -> None:
    write_all(write_fd, b"\x00\x00\x00\x05not marshal")


def _fake_helper_never_answers(*_args: Any) -> None:
    time.sleep(60)


@pytest.mark.parametrize(
    "fake",
    [_fake_helper_dies, _fake_helper_answers_too_few, _fake_helper_answers_unknown_priority,
     _fake_helper_garbles, _fake_helper_never_answers],
)  # fmt: skip
def test_a_broken_helper_loses_nothing(
    classifier: Classifier, forks: list[int], monkeypatch: pytest.MonkeyPatch, fake: Any
) -> None:
    """Its half is classified here: the same answers; it is reaped; a warning says why."""
    monkeypatch.setattr(classify_split, "_serve", fake)
    monkeypatch.setattr(classify_split, "ANSWER_GRACE", 0.5)
    messages = [_message(i) for i in range(2 * SPLIT)]
    with structlog.testing.capture_logs() as logs:
        assert classify_many(classifier.classify, messages) == _expected(classifier, messages)
    assert [e["event"] for e in logs] == ["classify_helper_failed"]
    assert len(forks) == 1


def test_a_helper_that_cannot_start(
    classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No fork (out of processes): everything is classified here."""
    monkeypatch.setattr(classify_split, "SPLIT_FROM", SPLIT)

    def no_fork(*_args: Any) -> tuple[int, int, int]:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(classify_split, "fork_helper", no_fork)
    messages = [_message(i) for i in range(2 * SPLIT)]
    with structlog.testing.capture_logs() as logs:
        assert classify_many(classifier.classify, messages) == _expected(classifier, messages)
    assert [e["event"] for e in logs] == ["classify_helper_failed"]


def _verdicts(scanner: Scanner, messages: list[Message]) -> list[tuple[object, ...]]:
    outcome = asyncio.run(scanner.scan(FakeQueueSource(messages, NOW)))
    return sorted((v.message.key, v.classification, v.deadline, v.stuck) for v in outcome.verdicts)


def test_a_scan_of_many_new_messages_judges_as_before(
    tmp_path: Path, forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first scan of many messages forks once; its verdicts are those without a fork."""
    messages = [_message(i) for i in range(3 * SPLIT)]
    settings = load(None)
    split = _verdicts(Scanner(settings.classifier(), Store(tmp_path / "a.db")), messages)
    assert len(forks) == 1
    monkeypatch.setattr(classify_split, "SPLIT_FROM", 10**9)
    plain = _verdicts(Scanner(settings.classifier(), Store(tmp_path / "b.db")), messages)
    assert split == plain
    assert len(forks) == 1


def test_the_wait_for_the_helper_follows_the_work(
    classifier: Classifier, forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop waits for the helper a few times as long as its own half took, not more.

    A slow classifier (10 ms a message): the wait granted is ANSWER_FACTOR times this
    process's half (20 messages), above ANSWER_GRACE; the helper answers within it.
    """
    monkeypatch.setattr(classify_split, "ANSWER_GRACE", 0.05)
    waits: list[float] = []
    collect = classify_split._collect

    def recording(pid: int, read_fd: int, count: int, wait: float) -> Any:
        waits.append(wait)
        return collect(pid, read_fd, count, wait)

    monkeypatch.setattr(classify_split, "_collect", recording)

    def slow(message: Message) -> Any:
        time.sleep(0.01)
        return classifier.classify(message)

    messages = [_message(i) for i in range(SPLIT)]
    assert classify_many(slow, messages) == _expected(classifier, messages)
    assert len(waits) == 1
    assert classify_split.ANSWER_FACTOR * 0.2 <= waits[0] < classify_split.ANSWER_FACTOR * 2
