"""Modern ids and instance names (issue 15, item 5), on real output.

Postfix: ``tests/data/postfix-long-ids/`` is real output of a Postfix 3.7.11 with
``enable_long_queue_ids = yes``, ``syslog_name = postfix-mw2`` and a submission service named
``postfix-mw2/submission`` (see its README). A long id's hashed queue directory is derived
from its microseconds, not its first character: the Postfix source used to look for
``deferred/4/4jjVhM6LFpzJB4V`` when the file was in ``deferred/D/``.

Exim: the 4.97 ids, as ``exim_id_update(8)`` (exim4-base 4.97) puts it: "The internal exim
message ID format changed in 4.97 ... The new ID is 23 characters rather than 16, and is
visible in various places - notably logs, message headers, and spool file names."
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.model import Delivery, DeliveryStatus, Removed
from mailwatch.parsing import exim, postqueue
from mailwatch.parsing.canary import parse_queue_id
from mailwatch.parsing.maillog import parse_line, program_and_queue_id
from mailwatch.parsing.queueid import _BASE52, hash_dirs, is_long, is_queue_id

DATA = Path(__file__).resolve().parents[1] / "data" / "postfix-long-ids"
REFERENCE = datetime(2026, 12, 8, tzinfo=UTC)
LOG = (DATA / "maillog.log").read_text().splitlines()


def _queue_files() -> dict[str, str]:
    """Queue id → its hash directory, as the real Postfix laid them out."""
    rows = (DATA / "queue-files.txt").read_text().split()
    return {path.rsplit("/", 1)[1]: path.split("/")[1] for path in rows}


class TestPostfixLongIds:
    """Real long ids: listed, hashed, logged."""

    def test_hash_directory_is_where_postfix_put_the_file(self) -> None:
        """deferred/D/4jjVhM6LFpzJB4V: the microseconds' first hex digit, not ``4``."""
        files = _queue_files()
        assert len(files) == 3
        for queue_id, directory in files.items():
            assert is_long(queue_id)
            assert hash_dirs(queue_id) == directory, queue_id
            assert directory != queue_id[0]  # the old guess: first character

    def test_short_ids_hash_by_their_first_characters(self) -> None:
        """The default form: its first hex digits are the microseconds already."""
        assert hash_dirs("7C2BA2101ED") == "7"
        assert hash_dirs("7C2BA2101ED", depth=2) == "7/C"
        assert not is_long("7C2BA2101ED")
        assert is_queue_id("7C2BA2101ED")
        assert not is_queue_id("NOQUEUE")

    def test_postqueue_listing_parses(self) -> None:
        """``postqueue -j`` of the long-id instance: every entry, its long id kept whole."""
        lines = (DATA / "postqueue-j.jsonl").read_text().splitlines()
        entries = [postqueue.parse_line(line) for line in lines]
        assert all(isinstance(e, postqueue.QueueEntry) for e in entries)
        ids = {e.queue_id for e in entries if isinstance(e, postqueue.QueueEntry)}
        assert ids == set(_queue_files())

    def test_mail_log_of_a_named_instance(self) -> None:
        """postfix-mw2/smtp deferrals and a postfix-mw2/postsuper removal, with long ids."""
        events = [parse_line(line, REFERENCE) for line in LOG]
        deferred = [e for e in events if isinstance(e, Delivery)]
        removed = [e for e in events if isinstance(e, Removed)]
        assert {e.queue_id for e in deferred} == set(_queue_files())
        assert all(e.status is DeliveryStatus.DEFERRED and e.dsn == "4.4.1" for e in deferred)
        assert [e.queue_id for e in removed] == ["4jjVhM6X9mzJB4c"]

    def test_submission_service_lines_name_their_message(self) -> None:
        """``postfix-mw2/submission/smtpd[…]: 4jjVhM6X9mzJB4c: client=…`` is read whole."""
        found = {program_and_queue_id(line, REFERENCE) for line in LOG}
        assert ("postfix-mw2/submission/smtpd", "4jjVhM6X9mzJB4c") in found
        assert ("postfix-mw2/cleanup", "4jjVhM6LFpzJB4V") in found
        line = "Dec 07 05:16:51 mx postfix/submission/smtpd[22289]: 4jjVhM6X9mzJB4c: client=x"
        assert program_and_queue_id(line, REFERENCE) == ("postfix/submission/smtpd",
                                                          "4jjVhM6X9mzJB4c")  # fmt: skip
        not_postfix = "Dec 07 05:16:51 mx postfixy/smtp[1]: 4jjVhM6X9mzJB4c: removed"
        assert program_and_queue_id(not_postfix, REFERENCE) is None

    def test_canary_reply_with_a_long_id(self) -> None:
        """Postfix's "queued as" reply carries the long id (the canary follows it)."""
        assert parse_queue_id("250 2.0.0 Ok: queued as 4jjVhM6X9mzJB4c") == "4jjVhM6X9mzJB4c"


def _long_id(seconds: int, usec: int, inode: int) -> str:
    """Encode a long id as Postfix does (``MQID_LG_*``): base 52, 52, ``z``, base 51."""

    def digits(value: int, base: int, pad: int) -> str:
        out = ""
        while value or not out:
            value, digit = divmod(value, base)
            out = _BASE52[digit] + out
        return out.rjust(pad, "0")

    return digits(seconds, 52, 6) + digits(usec, 52, 4) + "z" + digits(inode, 51, 1)


@given(st.integers(0, 2**34), st.integers(0, 999_999), st.integers(0, 2**40), st.integers(1, 3))
def test_long_id_hash_is_its_microseconds_in_hex(
    seconds: int, usec: int, inode: int, depth: int
) -> None:
    """Any long id: the hash directories are its microseconds as 5 hex digits, cut to depth."""
    queue_id = _long_id(seconds, usec, inode)
    assert is_long(queue_id)
    assert hash_dirs(queue_id, depth) == "/".join(f"{usec:05X}"[:depth])


class TestExim497Ids:
    """23-character ids (6 + 11 + 4 base-62 digits) wherever Exim ids are parsed."""

    NEW = "1rBNQS-00000000Ghq-3y0B"

    def test_the_format(self) -> None:
        """23 characters; the first six still encode the arrival second (base 62)."""
        assert len(self.NEW) == 23
        assert exim.arrival_from_id(self.NEW) == exim.arrival_from_id("1rBNQS-0000Gh-3y")

    def test_listing_log_and_canary(self) -> None:
        """``exim -bpru`` entry, a message-log line prefix, and the ``id=`` of an SMTP reply."""
        (entry,) = exim.parse_queue(f" 0m   401 {self.NEW} <om@probation.example>\n"
                                    "          ppcs@justice.example\n\n")  # fmt: skip
        assert isinstance(entry, exim.EximEntry)
        assert entry.queue_id == self.NEW
        assert parse_queue_id(f"250 OK id={self.NEW}") == self.NEW
        log = (f"2026-12-07 05:16:51 {self.NEW} ppcs@justice.example R=dnslookup T=remote_smtp"
               " defer (111): Connection refused\n")  # fmt: skip
        parsed = exim.parse_message_log(log)
        assert "Connection refused" in (parsed.reasons.get("ppcs@justice.example") or "")


def test_recorded_listing_is_valid_json() -> None:
    """The fixture is what postqueue printed (one JSON object per line)."""
    for line in (DATA / "postqueue-j.jsonl").read_text().splitlines():
        assert json.loads(line)["queue_name"] == "deferred"


@given(st.text(max_size=200))
def test_any_text_is_answered(text: str) -> None:
    """Any text: a yes/no and a directory name, never an exception."""
    assert isinstance(is_queue_id(text), bool)
    assert isinstance(hash_dirs(text), str)
