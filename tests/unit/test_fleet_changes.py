"""What a scan changed (core/changes.py): only the differences, and a faithful JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.changes import (
    ChangeSet,
    Heartbeat,
    Outcome,
    Removal,
    Upsert,
    decode,
    diff,
    encode,
)

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _upsert(key: str, queue: str = "deferred", seen: float = 1.0) -> Upsert:
    return Upsert("mta", key.upper(), 100.0, key, queue, 10, None, "general", 4, "default",
                  200.0, "refused", "connection", ("justice.example",), None, seen)  # fmt: skip


def test_a_rescan_of_an_unchanged_queue_changes_nothing() -> None:
    """Same messages (even first pushed at another time): no upserts, no removals."""
    previous = {"a": _upsert("a"), "b": _upsert("b")}
    upserts, removals, state = diff(previous, [_upsert("a", seen=9.0), _upsert("b")], AT)
    assert (upserts, removals) == ([], [])
    assert set(state) == {"a", "b"}


def test_new_changed_and_gone_messages() -> None:
    """A new message and a changed queue are upserts; a missing one is a removal at ``at``."""
    previous = {"a": _upsert("a"), "b": _upsert("b")}
    upserts, removals, _ = diff(previous, [_upsert("a", queue="hold"), _upsert("c")], AT)
    assert [u.key for u in upserts] == ["a", "c"]
    assert removals == [Removal("mta", "B", 100.0, AT.timestamp())]


@given(st.lists(st.text(min_size=1, max_size=8), max_size=5), st.booleans(),
       st.one_of(st.none(), st.text(max_size=20)))  # fmt: skip
def test_json_round_trip(keys: list[str], full: bool, error: str | None) -> None:
    """A change set comes back from the local queue exactly as it went in."""
    changes = ChangeSet(
        "mta", Heartbeat("mta", 5.0, ok=error is None, error=error, messages=len(keys)),
        upserts=tuple(_upsert(k) for k in keys),
        removals=(Removal("mta", "Q", 1.0, 2.0),),
        outcomes=(Outcome("mta", "Q", "bounced", 3, 4.0, "5.1.1", "user unknown", 1.5),),
        full=full,
    )  # fmt: skip
    assert decode(encode(changes)) == changes
    assert changes.size == 1 + len(keys) + 2
