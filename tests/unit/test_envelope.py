"""Unit tests for showq's view of a queue: the envelope and defer-log parsers, the watcher.

The watcher's tests (mailwatch.sources.postfix_qdir) use fabricated queue directories
(fakes) for what a real Postfix cannot be made to do on demand: a queue id reused, a
directory change within the timestamp granularity, a defer log appended without its
directory changing. The real-Postfix proof is tests/integration/test_postfix_change_detection.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.model import Message
from mailwatch.errors import ParseError
from mailwatch.errors import QueueFileGap as Gap
from mailwatch.parsing.deferlog import NO_REASON, parse_defer_log
from mailwatch.parsing.envelope import parse_queue_file, quote_local
from mailwatch.parsing.postqueue import QueueEntry, parse_line
from mailwatch.sources import postfix_qdir
from mailwatch.sources.postfix_qdir import GRANULARITY_NS, QueueDirWatcher


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _record(rec_type: str, payload: bytes = b"") -> bytes:
    return rec_type.encode("ascii") + _varint(len(payload)) + payload


def queue_file(
    *,
    sender: bytes = b"om@probation.example",
    recipients: tuple[tuple[str, bytes], ...] = (("R", b"ppcs@justice.example"),),
    extracted: tuple[tuple[str, bytes], ...] = (),
    headers: tuple[bytes, ...] = (b"Subject: Recall", b"From: om@probation.example"),
    body: bytes = b"Part A attached.",
    arrival: bytes = b"1795953996 123456",
) -> bytes:
    """A queue file laid out as cleanup writes one (C record with the real offsets)."""
    envelope = _record("T", arrival) + _record("S", sender)
    envelope += b"".join(_record(t, p) for t, p in recipients)
    content = b"".join(_record("N", line) for line in (*headers, b"", body))
    tail = _record("X") + b"".join(_record(t, p) for t, p in extracted) + _record("E")
    size_len = 2 + 6 * 16 - 1
    data_offset = size_len + len(envelope) + 2
    size = f"{len(content):15d} {data_offset:15d} {1:15d} {0:15d} {len(content):15d} {0:15d}"
    return _record("C", size.encode()) + envelope + _record("M") + content + tail


def _parse(data: bytes, mtime: int = 7):  # type: ignore[no-untyped-def]
    return parse_queue_file(data, file_size=len(data), mtime=mtime)


class TestEnvelope:
    """What showq reports, record by record."""

    def test_a_cleanup_file(self) -> None:
        """Arrival (seconds of T), size (C's first field), sender, recipients, headers."""
        data = queue_file()
        found = _parse(data)
        assert found is not None
        assert found.arrival == 1795953996
        assert found.sender == "om@probation.example"
        assert found.recipients == ("ppcs@justice.example",)
        assert found.headers == b"Subject: Recall\nFrom: om@probation.example"
        content = data.index(_record("X")) - data.index(_record("M")) - 2
        assert found.size == content

    def test_done_and_canceled_recipients_are_not_listed(self) -> None:
        """D (delivered) and / (canceled) are skipped; only R is pending."""
        recipients = (("D", b"a@ok.example"), ("R", b"b@later.example"), ("/", b"c@x.example"))
        found = _parse(queue_file(recipients=recipients))
        assert found is not None
        assert found.recipients == ("b@later.example",)

    def test_recipients_after_the_content(self) -> None:
        """Extracted recipients (sendmail -t) are found past the content, as showq seeks."""
        found = _parse(queue_file(recipients=(), extracted=(("R", b"x@y.example"),)))
        assert found is not None
        assert found.recipients == ("x@y.example",)

    def test_null_sender_and_quoted_local_parts(self) -> None:
        """Empty sender is MAILER-DAEMON; a local part with a space is quoted."""
        found = _parse(queue_file(sender=b"", recipients=(("R", b"john smith@x.example"),)))
        assert found is not None
        assert found.sender == "MAILER-DAEMON"
        assert found.recipients == ('"john smith"@x.example',)
        assert quote_local(b"a..b@x") == b'"a..b"@x'
        assert quote_local(b"plain.name@x") == b"plain.name@x"

    def test_no_sender_is_not_listed(self) -> None:
        """A file without an S record is not listed by showq."""
        data = _record("C", b"0") + _record("T", b"1") + _record("E")
        assert _parse(data) is None

    def test_missing_arrival_is_the_mtime(self) -> None:
        """Without a T record showq prints the file's mtime."""
        found = _parse(queue_file(arrival=b""), mtime=42)
        assert found is not None
        assert found.arrival == 42

    def test_a_prefix_asks_for_the_rest(self) -> None:
        """Given only the start of a large file: Gap, then the tail completes it."""
        data = queue_file(body=b"x" * 100, extracted=(("R", b"late@x.example"),))
        head = data[: data.index(_record("X"))]
        with pytest.raises(Gap) as gap:
            parse_queue_file(head, file_size=len(data), mtime=0)
        offset = gap.value.offset
        found = parse_queue_file(
            head, file_size=len(data), mtime=0, tail=data[offset:], tail_at=offset
        )
        assert found is not None
        assert found.recipients == ("ppcs@justice.example", "late@x.example")

    def test_pointer_records_are_followed(self) -> None:
        """A p record jumps (rec_goto); p with 0 is a place holder."""
        data = bytearray(queue_file())
        insert = _record("p", b"0")
        at = data.index(_record("M"))
        data[at:at] = insert  # shifts the content: the C record's offsets are now stale
        found = _parse(bytes(data))
        assert found is not None
        assert found.recipients == ("ppcs@justice.example",)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.integers(min_value=0, max_value=500))
    def test_never_raises_anything_but_parse_errors(self, data: bytes, size: int) -> None:
        """Arbitrary bytes: a value, None, or a ParseError."""
        with contextlib.suppress(ParseError):
            parse_queue_file(data, file_size=size, mtime=0)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.binary(min_size=1, max_size=40), max_size=5), st.binary(max_size=30))
    def test_recipients_round_trip(self, addresses: list[bytes], sender: bytes) -> None:
        """Whatever the addresses, one listed per R record, in order."""
        data = queue_file(sender=sender, recipients=tuple(("R", a) for a in addresses))
        found = _parse(data)
        assert found is not None
        assert len(found.recipients) == len(addresses)


REAL_DEFER_LOG = (
    b"\n<spo27@hmcts.cjsm.net>: delivery temporarily suspended: connect to "
    b"127.0.0.1[127.0.0.1]:49211: Connection refused\nrecipient=spo27@hmcts.cjsm.net\n"
    b"offset=661\ndsn_orig_rcpt=rfc822;spo27@hmcts.cjsm.net\nstatus=4.4.1\naction=delayed\n"
    b"reason=delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:49211: "
    b"Connection refused\n\n"
)


class TestDeferLog:
    """bounce_log_read as showq uses it."""

    def test_real_postfix_entry(self) -> None:
        """Postfix 3.7's mixed old/new entry gives the recipient and its reason."""
        assert parse_defer_log(REAL_DEFER_LOG) == (
            (
                "spo27@hmcts.cjsm.net",
                "delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:49211: "
                "Connection refused",
            ),
        )

    def test_unfinished_entry_is_not_read(self) -> None:
        """An entry without its blank line (still being written) is skipped, as in showq."""
        assert parse_defer_log(b"recipient=a@x\nreason=busy\n") == ()

    def test_missing_reason(self) -> None:
        """An entry without a reason has showq's place holder."""
        assert parse_defer_log(b"recipient=a@x\n\n") == (("a@x", NO_REASON),)

    @given(st.binary(max_size=300))
    def test_never_raises(self, data: bytes) -> None:
        """Arbitrary bytes give entries of strings."""
        for address, reason in parse_defer_log(data):
            assert isinstance(address, str)
            assert isinstance(reason, str)


QUEUE_ID = "3A1B2C4D5E6"  # short form: hashed under deferred/3/


def _write(root: Path, queue: str, body: bytes, queue_id: str = QUEUE_ID) -> Path:
    directory = root / queue / queue_id[0] if queue in ("deferred", "defer") else root / queue
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / queue_id
    path.write_bytes(body)
    if queue != "defer":
        path.chmod(0o700)  # complete: showq lists only files with the owner bits all set
    return path


def _watcher(root: Path) -> QueueDirWatcher:
    return QueueDirWatcher("mta1", str(root), {})


def test_reused_queue_id_is_a_new_message(tmp_path: Path) -> None:
    """Same name, new file (new arrival): re-read, a new key; the old message is gone."""
    _write(tmp_path, "deferred", queue_file(arrival=b"1795953996 1"))
    watcher = _watcher(tmp_path)
    (first,) = watcher.scan()
    path = _write(tmp_path, "deferred", queue_file(arrival=b"1795957000 1"))
    os.utime(path, ns=(1, 1))  # even with an old mtime: the ctime and content differ
    (second,) = watcher.scan()
    assert second.key != first.key
    assert int(second.arrival.timestamp()) == 1795957000


def test_unchanged_queue_reads_nothing(tmp_path: Path) -> None:
    """A rescan of an unchanged queue reads no file and returns the same objects."""
    _write(tmp_path, "deferred", queue_file())
    watcher = _watcher(tmp_path)
    first = watcher.scan()
    second = watcher.scan()
    assert watcher.files_read == 0
    assert [id(m) for m in first] == [id(m) for m in second]


def test_directory_changed_within_the_granularity_is_listed_again(tmp_path: Path) -> None:
    """A file added while the directory mtime looks unchanged (coarse clock) is still seen."""
    _write(tmp_path, "hold", queue_file())
    watcher = _watcher(tmp_path)
    assert len(watcher.scan()) == 1
    hold = tmp_path / "hold"
    stamp = hold.stat()
    _write(tmp_path, "hold", queue_file(), queue_id="4B2C3D5E6F7")
    os.utime(hold, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # as if in the same tick
    assert len(watcher.scan()) == 2


def test_defer_log_appended_while_active(tmp_path: Path) -> None:
    """An entry appended to an active message's defer log is read at the next scan."""
    _write(tmp_path, "active", queue_file(recipients=(("R", b"a@x"), ("R", b"b@x"))))
    log = _write(tmp_path, "defer", b"recipient=a@x\nreason=first\n\n")
    watcher = _watcher(tmp_path)
    (message,) = watcher.scan()
    assert [(r.address, r.delay_reason) for r in message.recipients] == [
        ("a@x", "first"),
        ("b@x", None),
    ]
    with log.open("ab") as out:
        out.write(b"recipient=b@x\nreason=second\n\n")
    (message,) = watcher.scan()
    assert [r.delay_reason for r in message.recipients] == ["first", "second"]


def test_seeded_messages_are_reused_unless_changed_since(tmp_path: Path) -> None:
    """Stamped files take the listing's messages; recent or rewritten ones are read again."""
    path = _write(tmp_path, "deferred", queue_file(recipients=(("R", b"a@x"), ("R", b"b@x"))))
    listing = _watcher(tmp_path).scan()  # what postqueue -j would say
    watcher = _watcher(tmp_path)
    assert watcher.scan(read=False) == []
    watcher.seed(listing, time.time_ns())  # changed within the granularity: not taken
    assert watcher.scan()[0] is not listing[0]
    assert watcher.files_read == 1
    watcher = _watcher(tmp_path)
    watcher.scan(read=False)
    watcher.seed(listing, time.time_ns() + 10 * GRANULARITY_NS)  # listed long after
    assert [id(m) for m in watcher.scan()] == [id(m) for m in listing]  # seeded, reused
    path.write_bytes(queue_file(recipients=(("D", b"a@x"), ("R", b"b@x"))))  # after the stamp
    (message,) = watcher.scan()
    assert [r.address for r in message.recipients] == ["b@x"]


def _queue(root: Path, n: int) -> None:
    """``n`` deferred messages with a defer log each and a header block of ~600 bytes."""
    headers = tuple(f"X-Filler-{i}: {'y' * 50}".encode() for i in range(10))
    for i in range(n):
        queue_id = f"{0x3A1B2C4D5E6 + i:X}"
        for queue in ("deferred", "defer"):
            directory = root / queue / queue_id[0]
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / queue_id
            if queue == "defer":
                path.write_bytes(b"recipient=a@x\nreason=connect to x: Connection refused\n\n")
            else:
                path.write_bytes(queue_file(headers=(b"Subject: S", *headers)))
                path.chmod(0o700)


def _deep_size(obj: object, seen: set[int]) -> int:
    """Bytes held by ``obj`` and what it refers to (each object once), messages left out."""
    if id(obj) in seen or isinstance(obj, Message | type):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        parts: list[object] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, tuple | list | set | frozenset):
        parts = list(obj)
    elif isinstance(obj, str | bytes | int | float | bool) or obj is None:
        parts = []
    else:
        names = [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ())]
        parts = [getattr(obj, n) for n in names if hasattr(obj, n)]
    return size + sum(_deep_size(part, seen) for part in parts)


def test_the_watcher_keeps_little_per_message(tmp_path: Path) -> None:
    """Besides the messages it returns, the watcher holds under 400 bytes per queue file.

    Was ~1,800 here: the envelope with its header block, a tuple of five ints per file and
    per defer log, the path, the defer log's entries, the names listed twice.
    """
    n = 400
    _queue(tmp_path, n)
    watcher = QueueDirWatcher("mta1", str(tmp_path), {})
    assert len(watcher.scan()) == n
    seen: set[int] = set()
    per_file = (_deep_size(watcher.files, seen) + _deep_size(watcher.dirs, seen)) / n
    assert per_file < 400, per_file


def test_seeded_message_takes_a_new_defer_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seeded message: a changed defer directory reads nothing while its log is as listed.

    A log written after the listing began is read (and the message's queue file again).
    """
    monkeypatch.setattr(postfix_qdir, "GRANULARITY_NS", 1_000_000)  # the test's clock: 1 ms
    _write(tmp_path, "deferred", queue_file(recipients=(("R", b"a@x"), ("R", b"b@x"))))
    log = _write(tmp_path, "defer", b"recipient=a@x\nreason=first\n\n")
    listing = _watcher(tmp_path).scan()  # what postqueue -j would say
    for directory in (tmp_path / "deferred" / "3", log.parent):
        os.utime(directory, ns=(10**9, 10**9))  # long unchanged
    watcher = _watcher(tmp_path)
    watcher.scan(read=False)
    time.sleep(0.01)
    watcher.seed(listing, time.time_ns())  # the listing began after both files were written
    assert [id(m) for m in watcher.scan()] == [id(m) for m in listing]
    assert watcher.files_read == 0
    os.utime(log.parent, ns=(2 * 10**9, 2 * 10**9))  # another message's log came or went
    assert [id(m) for m in watcher.scan()] == [id(m) for m in listing]
    assert watcher.files_read == 0  # this log is the one the listing read: only stamped
    time.sleep(0.01)
    log.write_bytes(b"recipient=a@x\nreason=first\n\nrecipient=b@x\nreason=second\n\n")
    os.utime(log.parent, ns=(3 * 10**9, 3 * 10**9))  # changed: its defer logs are checked
    (message,) = watcher.scan()
    assert watcher.files_read == 1  # the unchanged queue file, for its recipients
    assert [(r.address, r.delay_reason) for r in message.recipients] == [
        ("a@x", "first"),
        ("b@x", "second"),
    ]
    assert message.key == listing[0].key


def test_names_are_the_messages_strings(tmp_path: Path) -> None:
    """The watcher's names and the listing's queue ids are one string object per message."""
    _write(tmp_path, "deferred", queue_file())
    _write(tmp_path, "defer", b"recipient=ppcs@justice.example\nreason=r\n\n")
    (message,) = _watcher(tmp_path).scan()
    listed = parse_line(
        '{"queue_name": "deferred", "queue_id": "' + "".join(message.queue_id) + '",'
        ' "arrival_time": 1795953996, "sender": "om@probation.example", "recipients": []}'
    )
    assert isinstance(listed, QueueEntry)
    watcher = _watcher(tmp_path)
    watcher.scan(read=False)
    names = [name for listed_dir in watcher.dirs.values() for name in listed_dir.files]
    assert len(names) == 2
    assert all(name is listed.queue_id for name in names)
