"""The audit trail keeps the proven actor and a claimed "on behalf of" apart (migration 6)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailwatch.alerting.lifecycle import Silence
from mailwatch.store import Store
from mailwatch.store.alerts import acting
from mailwatch.store.schema import MIGRATIONS

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_existing_store_gains_the_column(tmp_path: Path) -> None:
    """A store made before the column keeps its records (on behalf of: none)."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO audit (at, actor, action, target) VALUES (1, 'om', 'ack', 'alert x')")
    db.close()
    with Store(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        (old,) = store.audit_trail()
        assert (old.actor, old.on_behalf_of) == ("om", None)


def test_actor_and_on_behalf_of(tmp_path: Path) -> None:
    """Both are stored; a name equal to the actor adds nothing and is not stored."""
    with Store(tmp_path / "mw.db") as store:
        store.audit(NOW, "on-call", "hold", "message m1", "ok", on_behalf_of="Duty Manager")
        store.audit(NOW, "on-call", "hold", "message m1", "ok", on_behalf_of="on-call")
        store.add_silence(
            Silence(0, "general", None, NOW, NOW + timedelta(hours=1), "work", "alice"),
            actor="on-call", on_behalf_of="alice",
        )  # fmt: skip
        trail = [(r.actor, r.on_behalf_of, r.action) for r in store.audit_trail()]
    assert trail == [
        ("on-call", "alice", "silence"),
        ("on-call", None, "hold"),
        ("on-call", "Duty Manager", "hold"),
    ]


def test_acting() -> None:
    """Where one name fits, both show."""
    assert acting("on-call", None) == "on-call"
    assert acting("on-call", "on-call") == "on-call"
    assert acting("on-call", "alice") == "alice (via on-call)"
