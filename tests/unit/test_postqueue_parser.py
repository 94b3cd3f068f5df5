"""Unit tests for mailwatch.parsing.postqueue against golden ``postqueue -j`` output."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.model import Recipient
from mailwatch.parsing import postqueue
from mailwatch.parsing.postqueue import Malformed, QueueEntry, parse_line, parse_lines

DATA = Path(__file__).resolve().parent.parent / "data" / "postqueue"


def _lines(name: str) -> list[bytes]:
    """The lines of a golden file, as ``postqueue -j`` wrote them (the file ends with LF)."""
    lines = (DATA / name).read_bytes().split(b"\n")
    assert lines[-1] == b"", f"{name} must end with a newline"
    return lines[:-1]


def _expected(name: str) -> list[dict[str, Any]]:
    """The expectations stored next to a golden file."""
    rows: list[dict[str, Any]] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return rows


def _entry(row: dict[str, Any]) -> QueueEntry:
    """The QueueEntry an expectation row describes."""
    return QueueEntry(
        queue_name=row["queue_name"],
        queue_id=row["queue_id"],
        arrival=datetime.fromisoformat(row["arrival"]),
        size=row["size"],
        sender=row["sender"],
        recipients=tuple(Recipient(address, reason) for address, reason in row["recipients"]),
        forced_expire=row["forced_expire"],
    )


VALID_LINES = _lines("valid.jsonl")
VALID_EXPECTED = _expected("valid.expected.json")
MALFORMED_LINES = _lines("malformed.jsonl")
MALFORMED_EXPECTED = _expected("malformed.expected.json")

_ADDRESS = re.compile(rb"[^\s\"'\[\]{}:,]+@[^\s\"'\[\]{}:,]+")
_QUEUE_ID = re.compile(rb"\b[0-9A-F]{10,12}\b")


def _secrets(line: bytes) -> list[str]:
    """Addresses and queue ids found in a raw line (what a reason must never repeat)."""
    found = _ADDRESS.findall(line) + _QUEUE_ID.findall(line)
    return [s.decode("utf-8", "replace") for s in found]


class TestGoldenValid:
    """Every line of the valid golden file parses to the expected entry."""

    def test_golden_files_agree(self) -> None:
        """The expectation file describes each line of the golden file, in order."""
        assert [row["line"] for row in VALID_EXPECTED] == list(range(1, len(VALID_LINES) + 1))

    @pytest.mark.parametrize("row", VALID_EXPECTED, ids=lambda row: f"line{row['line']}")
    def test_bytes(self, row: dict[str, Any]) -> None:
        """A line given as bytes parses to the expected entry."""
        assert parse_line(VALID_LINES[row["line"] - 1], row["line"]) == _entry(row)

    @pytest.mark.parametrize("row", VALID_EXPECTED, ids=lambda row: f"line{row['line']}")
    def test_str(self, row: dict[str, Any]) -> None:
        """A line given as text parses exactly as its bytes do."""
        line = VALID_LINES[row["line"] - 1].decode("utf-8")
        assert parse_line(line, row["line"]) == _entry(row)

    def test_arrival_is_utc_aware(self) -> None:
        """Arrival times are timezone-aware UTC datetimes."""
        entry = parse_line(VALID_LINES[0])
        assert isinstance(entry, QueueEntry)
        assert entry.arrival.tzinfo is UTC
        assert entry.arrival == datetime(2026, 11, 29, 12, 6, 36, tzinfo=UTC)


class TestGoldenMalformed:
    """Bad lines in a mixed file are reported, never raised, and never echoed."""

    def test_golden_files_agree(self) -> None:
        """The expectation file describes each line of the golden file, in order."""
        assert [row["line"] for row in MALFORMED_EXPECTED] == list(
            range(1, len(MALFORMED_LINES) + 1)
        )

    @pytest.mark.parametrize("row", MALFORMED_EXPECTED, ids=lambda row: f"line{row['line']}")
    def test_line(self, row: dict[str, Any]) -> None:
        """Each line gives an entry, ``None`` (blank) or a Malformed with the stated reason."""
        number: int = row["line"]
        result = parse_line(MALFORMED_LINES[number - 1], number)
        if row["kind"] == "entry":
            assert isinstance(result, QueueEntry)
        elif row["kind"] == "blank":
            assert result is None
        else:
            assert isinstance(result, Malformed)
            assert result.line_number == number
            assert result.reason
            if "reason" in row:
                assert result.reason == row["reason"]

    @pytest.mark.parametrize(
        "row",
        [row for row in MALFORMED_EXPECTED if row["kind"] == "malformed"],
        ids=lambda row: f"line{row['line']}",
    )
    def test_reason_never_contains_line_text(self, row: dict[str, Any]) -> None:
        """A Malformed reason repeats no address, queue id or the line itself."""
        line = MALFORMED_LINES[row["line"] - 1]
        result = parse_line(line, row["line"])
        assert isinstance(result, Malformed)
        secrets = _secrets(line)
        assert all(secret not in result.reason for secret in secrets)
        assert line.decode("utf-8", "replace").strip() not in result.reason

    def test_secrets_are_found(self) -> None:
        """The leak check above does look for something on most malformed lines."""
        with_secrets = [line for line in MALFORMED_LINES if _secrets(line)]
        assert len(with_secrets) >= 15

    def test_file_totals(self) -> None:
        """One bad line does not hide the rest: totals over the whole file."""
        results = [parse_line(line, n) for n, line in enumerate(MALFORMED_LINES, start=1)]
        kinds = [
            "blank" if r is None else "entry" if isinstance(r, QueueEntry) else "malformed"
            for r in results
        ]
        assert (kinds.count("entry"), kinds.count("blank"), kinds.count("malformed")) == (2, 3, 20)


def _line(**members: object) -> str:
    """A JSON line with a minimal valid message, members overridden (``None``: removed)."""
    obj: dict[str, object] = {
        "queue_name": "deferred",
        "queue_id": "E305A20C967",
        "arrival_time": 1795953996,
        "message_size": 504,
        "forced_expire": False,
        "sender": "om@probation.example",
        "recipients": [{"address": "ppcs@justice.example"}],
    }
    obj.update(members)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


class TestMembers:
    """Optional and oddly typed members degrade to safe defaults."""

    @pytest.mark.parametrize(
        ("members", "attribute", "expected"),
        [
            ({"message_size": None}, "size", 0),
            ({"message_size": "504"}, "size", 0),
            ({"message_size": True}, "size", 0),
            ({"message_size": 504.9}, "size", 504),
            ({"sender": None}, "sender", ""),
            ({"sender": 42}, "sender", ""),
            ({"recipients": None}, "recipients", ()),
            ({"recipients": []}, "recipients", ()),
            (
                {"recipients": [{"address": "a@x.example", "delay_reason": 42}]},
                "recipients",
                (Recipient("a@x.example", None),),
            ),
            ({"forced_expire": None}, "forced_expire", False),
            ({"forced_expire": "true"}, "forced_expire", False),
            ({"forced_expire": 1}, "forced_expire", False),
            ({"forced_expire": True}, "forced_expire", True),
            ({"arrival_time": 0}, "arrival", datetime(1970, 1, 1, tzinfo=UTC)),
            ({"queue_name": ""}, "queue_name", ""),
        ],
    )
    def test_member(self, members: dict[str, object], attribute: str, expected: object) -> None:
        """Each variation parses, with the expected value for the member."""
        entry = parse_line(_line(**members))
        assert isinstance(entry, QueueEntry)
        assert getattr(entry, attribute) == expected

    @pytest.mark.parametrize(
        ("members", "reason"),
        [
            ({"queue_name": None}, "missing member 'queue_name'"),
            ({"queue_name": 3}, "queue_name/queue_id must be non-empty strings"),
            ({"queue_id": None}, "missing member 'queue_id'"),
            ({"arrival_time": None}, "missing member 'arrival_time'"),
            ({"arrival_time": [1795953996]}, "arrival_time must be a number"),
            ({"recipients": [{"address": 7}]}, "recipient without an address"),
            ({"recipients": [None]}, "recipient without an address"),
        ],
    )
    def test_malformed_member(self, members: dict[str, object], reason: str) -> None:
        """A required member missing or of the wrong type makes the line Malformed."""
        assert parse_line(_line(**members), 9) == Malformed(9, reason)

    @pytest.mark.parametrize("line", ["", "\n", "  \t ", b"", b"\r\n"])
    def test_blank_is_none(self, line: str | bytes) -> None:
        """Blank lines are not messages and not errors."""
        assert parse_line(line) is None


_PRIVATE_ADDRESS = "s3cr3t.person@victims.example"
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from([_PRIVATE_ADDRESS, ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["address", "delay_reason", _PRIVATE_ADDRESS]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_MEMBERS = st.dictionaries(
    st.sampled_from(
        [
            "queue_name",
            "queue_id",
            "arrival_time",
            "message_size",
            "sender",
            "recipients",
            _PRIVATE_ADDRESS,
        ]
    ),
    _JSON,
)


class TestNeverLeaks:
    """Whatever the shape of the object, a Malformed reason never repeats its content."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(members=_MEMBERS, cut=st.integers(min_value=0, max_value=400))
    def test_reason_never_contains_secret(self, members: dict[str, object], cut: int) -> None:
        """Whole or truncated, a line either parses or yields a reason without the secret."""
        line = json.dumps(members)
        for candidate in (line, line[:cut], line.encode()[:cut] + b"\xff"):
            result = parse_line(candidate, 1)
            if isinstance(result, Malformed):
                assert _PRIVATE_ADDRESS not in result.reason
                assert "s3cr3t" not in result.reason


_TAILS = st.sampled_from(["", " ", "\t \r", "\n", "x", "}", "{}", ",1", "\x00", "]"])
_OBJECT_LINES = st.builds(lambda m, tail: json.dumps(m) + tail, _MEMBERS, _TAILS) | st.builds(
    lambda text: "{" + text, st.text(max_size=40).filter(lambda t: not t.startswith("\x00"))
)


class TestFastPath:
    """A bytes line starting with ``{`` (scanned directly) parses as its text does."""

    @settings(max_examples=400, deadline=None, database=None)
    @given(line=_OBJECT_LINES)
    def test_bytes_parse_as_text(self, line: str) -> None:
        """Same entry, or the same reason (trailing blanks, extra data, cut-off objects)."""
        assert parse_line(line.encode("utf-8", "surrogatepass"), 3) == parse_line(line, 3)


# Lines that start with "{": golden ones, valid and not, and the shapes a joined decode could
# read differently (two objects on a line, a trailing comma, deep nesting, NUL, odd bytes).
BRACED_LINES = st.one_of(
    st.sampled_from([line for line in VALID_LINES + MALFORMED_LINES if line[:1] == b"{"]),
    st.sampled_from([
        b'{"queue_name": "deferred"}, {"queue_id": "A"}', b'{"a": 1}{"b": 2}', b"{", b"{}",
        b'{"queue_name": "active", "queue_id": "B1", "arrival_time": 1}\r', b"{\x00}",
        b'{"x": "\xff"}', b"{" * 5000, b'{"queue_name": "hold", "queue_id": "C", '
        b'"arrival_time": 1.5e9, "recipients": [{"address": "a@b"}],}',
    ]),
    st.binary(max_size=40).map(lambda tail: b"{" + tail),
)  # fmt: skip


class TestLinesTogether:
    """``parse_lines`` (one JSON decode for a chunk) answers as ``parse_line`` line by line."""

    @settings(max_examples=400, deadline=None, database=None)
    @given(lines=st.lists(BRACED_LINES, max_size=8), first=st.integers(1, 10**6))
    def test_same_as_line_by_line(self, lines: list[bytes], first: int) -> None:
        """Any lines starting with ``{``, whichever path they take."""
        expected = [parse_line(line, first + i) for i, line in enumerate(lines)]
        assert parse_lines(lines, first) == expected

    def test_valid_lines_are_decoded_together(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Golden valid lines take the joined path (no line-by-line parse), same entries."""
        expected = [parse_line(line, n) for n, line in enumerate(VALID_LINES, start=1)]
        monkeypatch.setattr(postqueue, "parse_line", None)  # (calling it would fail)
        assert parse_lines(VALID_LINES, 1) == expected

    def test_a_line_that_is_not_braced_is_left_to_the_caller(self) -> None:
        """A blank line, or one starting with anything else: ``None``."""
        assert parse_lines([VALID_LINES[0], b""]) is None
        assert parse_lines([b" " + VALID_LINES[0]]) is None
