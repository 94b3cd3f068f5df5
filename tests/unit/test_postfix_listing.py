"""Unit tests for mailwatch.sources.postfix_listing: the worker that consumes ``postqueue -j``.

The worker reads a pipe; here the pipe is fed by the test and the queue directory is a
temporary one holding queue files written in Postfix's record format.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailwatch.core.headers import keep_set, parse_queue_header_blocks
from mailwatch.core.model import Headers
from mailwatch.sources.postfix_listing import ListingWorker
from mailwatch.sources.queuefile_headers import HEADER_READ_STEPS, CachedHeaders, read_queue_headers

ARRIVAL = 1795953996
HEADERS = [
    b"Received: from x (localhost [127.0.0.1])",
    b"\tby mx.probation.example (Postfix) with ESMTP id QID",
    b"From: om@probation.example",
    b"To: ppcs@justice.example",
    b"Subject: =?utf-8?q?OFFICIAL-SENSITIVE:_Emergency_recall?=",
    b"X-Case-Reference: A1234BC",
    b"MIME-Version: 1.0",
]


def _record(rec_type: str, payload: bytes = b"") -> bytes:
    length, encoded = len(payload), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return rec_type.encode() + bytes(encoded) + payload


def _queue_file(headers: list[bytes], body: bytes = b"Body line.") -> bytes:
    """A queue file with a true size record, envelope, headers, an empty line and a body."""
    envelope = _record("T", b"%d 0" % ARRIVAL) + _record("S", b"om@probation.example")
    content = b"".join(_record("N", h) for h in headers) + _record("N") + _record("N", body)
    rest = envelope + _record("M") + content + _record("X") + _record("E")
    offset = 2 + 6 * 15 + 5 + len(envelope) + 2
    fields = (len(content), offset, 1, 0, len(content), 0)
    return _record("C", b" ".join(b"%15d" % f for f in fields)) + rest


def _line(queue_id: str, queue: str = "deferred", arrival: int = ARRIVAL) -> bytes:
    return json.dumps(
        {
            "queue_name": queue,
            "queue_id": queue_id,
            "arrival_time": arrival,
            "message_size": 100,
            "sender": "om@probation.example",
            "recipients": [{"address": "ppcs@justice.example", "delay_reason": "refused"}],
        }
    ).encode()


def _store(queue_dir: Path, queue_id: str, queue: str = "deferred", hashed: bool = True) -> None:
    directory = queue_dir / queue / (queue_id[0] if hashed else "")
    directory.mkdir(parents=True, exist_ok=True)
    subject = b"Subject: Case " + queue_id.encode()
    (directory / queue_id).write_bytes(_queue_file([*HEADERS[:4], subject, *HEADERS[5:]]))


def _pipe(data: bytes) -> int:
    """A pipe already holding ``data`` and closed for writing: its read end."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return read_fd


def _worker(
    lines: list[bytes],
    queue_dir: Path | None,
    *,
    previous: ListingWorker | None = None,
    cache: dict[str, CachedHeaders] | None = None,
    keep: frozenset[str] | None = None,
    keep_lines: bool = True,
) -> ListingWorker:
    worker = ListingWorker(
        source="mta1",
        fd=_pipe(b"\n".join(lines) + b"\n"),
        previous=previous.lines if previous else {},
        header_cache=cache if cache is not None else {},
        queue_dir=lambda: queue_dir,
        need_queue_dir=lambda: None,
        keep=keep,
        keep_lines=keep_lines,
    )
    worker.run()
    return worker


class TestWorker:
    """Lines become messages; new ones have their headers read at once."""

    def test_new_messages_are_read(self, tmp_path: Path) -> None:
        """Each listed message is built with decoded headers; garbage is counted."""
        for queue_id in ("AAA1", "BBB2"):
            _store(tmp_path, queue_id)
        worker = _worker([_line("AAA1"), b"not json", b"", _line("BBB2")], tmp_path)
        assert worker.headers_read == 2
        assert [p.line_number for p in worker.problems] == [2]
        subjects = [m.subject for m in worker.messages if m is not None]
        assert subjects == ["Case AAA1", "Case BBB2"]
        first = worker.messages[0]
        assert first is not None
        assert first.key == f"mta1/AAA1/{ARRIVAL}"
        assert first.headers.get("X-Case-Reference") == "A1234BC"
        assert first.recipients[0].delay_reason == "refused"
        assert set(worker.header_cache) == {f"mta1/AAA1/{ARRIVAL}", f"mta1/BBB2/{ARRIVAL}"}

    def test_lines_not_kept_when_nobody_reuses_them(self, tmp_path: Path) -> None:
        """A first listing (the watcher keeps its messages) holds no line: the same messages.

        Before, every line (~350 bytes of JSON at 100,000 messages: ~40 MiB) and its entry
        stayed referenced until the listing was done, for a mapping that was then dropped.
        """
        for queue_id in ("AAA1", "BBB2"):
            _store(tmp_path, queue_id)
        lines = [_line("AAA1"), b"not json", _line("BBB2")]
        kept = _worker(lines, tmp_path)
        dropped = _worker(lines, tmp_path, keep_lines=False)
        assert len(kept.lines) == 2
        assert dropped.lines == {}
        assert dropped.messages == kept.messages
        assert dropped.header_cache == kept.header_cache
        assert (dropped.headers_read, dropped.problems) == (kept.headers_read, kept.problems)

    def test_keep_limits_the_headers(self, tmp_path: Path) -> None:
        """With ``keep``, only the essential and named headers are kept."""
        _store(tmp_path, "AAA1")
        worker = _worker([_line("AAA1")], tmp_path, keep=keep_set(["X-Case-Reference"]))
        message = worker.messages[0]
        assert message is not None
        assert [n for n, _ in message.headers.items] == [
            "From",
            "To",
            "Subject",
            "X-Case-Reference",
        ]

    def test_unchanged_line_reuses_entry_and_message(self, tmp_path: Path) -> None:
        """A line seen last time gives the same message object, with no read at all."""
        _store(tmp_path, "AAA1")
        cache: dict[str, CachedHeaders] = {}
        first = _worker([_line("AAA1")], tmp_path, cache=cache)
        (tmp_path / "deferred" / "A" / "AAA1").unlink()  # a read would now find nothing
        again = _worker([_line("AAA1")], tmp_path, previous=first, cache=cache)
        assert again.headers_read == 0
        assert again.messages[0] is first.messages[0]

    def test_changed_line_is_parsed_again(self, tmp_path: Path) -> None:
        """A new delay reason is a new line: parsed again, headers still from the cache."""
        _store(tmp_path, "AAA1")
        cache: dict[str, CachedHeaders] = {}
        first = _worker([_line("AAA1")], tmp_path, cache=cache)
        changed = _line("AAA1").replace(b"refused", b"timed out")
        again = _worker([changed], tmp_path, previous=first, cache=cache)
        message = again.messages[0]
        assert again.headers_read == 0
        assert message is not None
        assert message.delay_reason == "timed out"
        assert message.subject == "Case AAA1"

    def test_vanished_file_is_retried_next_time(self, tmp_path: Path) -> None:
        """No file: the message has no headers and nothing is cached; later it is read."""
        cache: dict[str, CachedHeaders] = {}
        first = _worker([_line("GONE1")], tmp_path, cache=cache)
        message = first.messages[0]
        assert first.headers_read == 0
        assert message is not None
        assert message.subject == ""
        assert cache == {}
        _store(tmp_path, "GONE1")
        again = _worker([_line("GONE1")], tmp_path, previous=first, cache=cache)
        assert again.headers_read == 1
        assert again.messages[0] is not None
        assert again.messages[0].subject == "Case GONE1"

    def test_a_chunks_files_are_all_read_before_any_is_decoded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One chunk of output: its queue files read one after the other, then decoded together."""
        ids = [f"Q{i:03d}" for i in range(20)]
        for queue_id in ids:
            _store(tmp_path, queue_id)
        events: list[str] = []
        real_open = os.open

        def opening(path: str, flags: int) -> int:
            events.append("open")
            return real_open(path, flags)

        def decoding(raws: list[bytes], *args: Any, **kwargs: Any) -> list[Headers]:
            events.append(f"decode {len(raws)}")
            return parse_queue_header_blocks(raws, *args, **kwargs)

        monkeypatch.setattr(os, "open", opening)
        monkeypatch.setattr(
            "mailwatch.sources.queuefile_headers.parse_queue_header_blocks", decoding
        )
        worker = _worker([_line(q) for q in ids], tmp_path, keep=keep_set())
        assert events == ["open"] * 20 + ["decode 20"]
        assert [m.subject for m in worker.messages if m is not None] == [f"Case {q}" for q in ids]
        assert worker.headers_read == 20

    def test_a_message_listed_twice_in_a_chunk_has_its_headers_both_times(
        self, tmp_path: Path
    ) -> None:
        """The second line waits for the first one's batch instead of reading nothing."""
        _store(tmp_path, "AAA1")
        _store(tmp_path, "BBB2")
        worker = _worker([_line("AAA1"), _line("BBB2"), _line("AAA1")], tmp_path)
        assert [m.subject for m in worker.messages if m is not None] == [
            "Case AAA1", "Case BBB2", "Case AAA1"
        ]  # fmt: skip
        assert worker.headers_read == 2

    def test_moved_file_is_found_in_another_queue(self, tmp_path: Path) -> None:
        """Listed as deferred but already moved to active (not hashed): still read."""
        _store(tmp_path, "MOVED1", queue="active", hashed=False)
        worker = _worker([_line("MOVED1")], tmp_path)
        assert worker.headers_read == 1

    def test_reads_wait_for_the_queue_directory(self, tmp_path: Path) -> None:
        """Before the queue directory is known, new messages are deferred and asked for once."""
        _store(tmp_path, "AAA1")
        _store(tmp_path, "BBB2")
        asked: list[bool] = []
        known: list[Path] = []
        worker = ListingWorker(
            "mta1",
            _pipe(_line("AAA1") + b"\n" + _line("BBB2")),
            {},
            {},
            lambda: known[0] if known else None,
            lambda: asked.append(True),
        )
        worker.run()
        assert asked == [True]
        assert worker.messages == [None, None]
        known.append(tmp_path)
        worker.read_deferred()
        assert worker.headers_read == 2
        assert [m.subject for m in worker.messages if m is not None] == ["Case AAA1", "Case BBB2"]

    def test_permission_error_stops_reads(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unreadable queue is recorded once; the listing is still consumed."""
        _store(tmp_path, "AAA1")
        _store(tmp_path, "BBB2")
        calls: list[str] = []

        def refuse(path: str, flags: int) -> int:
            calls.append(path)
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(os, "open", refuse)
        worker = _worker([_line("AAA1"), _line("BBB2")], tmp_path)
        assert isinstance(worker.error, PermissionError)
        assert len(calls) == 1
        assert len(worker.messages) == 2

    def test_stop_ends_a_worker_waiting_on_a_silent_pipe(self) -> None:
        """``stop`` makes the thread return though the pipe never closes (a hung postqueue)."""
        read_fd, write_fd = os.pipe()
        worker = ListingWorker("mta1", read_fd, {}, {}, lambda: None, lambda: None)
        thread = threading.Thread(target=worker.run)
        thread.start()
        time.sleep(0.05)
        started = time.monotonic()
        worker.stop()
        thread.join(5)
        os.close(write_fd)
        assert not thread.is_alive()
        assert time.monotonic() - started < 1


class TestReadQueueHeaders:
    """Header blocks straight from queue files."""

    def test_header_block_larger_than_the_first_read(self, tmp_path: Path) -> None:
        """Headers longer than the first read step are read in full."""
        long_header = b"X-Long: " + b"a" * (HEADER_READ_STEPS[0] + 100)
        (tmp_path / "deferred" / "L").mkdir(parents=True)
        (tmp_path / "deferred" / "L" / "LONG1").write_bytes(_queue_file([long_header]))
        assert read_queue_headers(tmp_path, "deferred", "LONG1") == long_header

    def test_not_a_queue_file_gives_empty_headers(self, tmp_path: Path) -> None:
        """An unreadable file is classified on the envelope alone (empty block)."""
        (tmp_path / "deferred" / "J").mkdir(parents=True)
        (tmp_path / "deferred" / "J" / "JUNK1").write_bytes(b"junk" * 5000)
        assert read_queue_headers(tmp_path, "deferred", "JUNK1") == b""

    def test_missing_file_is_none(self, tmp_path: Path) -> None:
        """A message in no queue gives ``None``."""
        assert read_queue_headers(tmp_path, "deferred", "NONE1") is None
