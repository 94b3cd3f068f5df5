"""The outcome index holds only messages with an outcome (migration 11), and is still used."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from mailwatch.core.judgement import LISTED_SQL, STUCK_SQL, UNDELIVERABLE_SQL
from mailwatch.store import Store
from mailwatch.store.schema import MIGRATIONS


def _index_sql(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        (sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'messages_by_outcome'"
        ).fetchone()
        return str(sql)
    finally:
        db.close()


def test_a_new_store_indexes_outcomes_only(tmp_path: Path) -> None:
    """A queued message (no outcome) adds no entry to the outcome index."""
    Store(tmp_path / "new.sqlite").close()
    assert _index_sql(tmp_path / "new.sqlite").endswith("WHERE outcome IS NOT NULL")


def test_an_older_store_is_migrated(tmp_path: Path) -> None:
    """A store at schema 10 (the full index) gets the partial one; its rows are kept."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:10], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.close()
    assert "WHERE" not in _index_sql(path)
    with Store(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert _index_sql(path).endswith("WHERE outcome IS NOT NULL")


@pytest.mark.parametrize("where", [UNDELIVERABLE_SQL, STUCK_SQL, LISTED_SQL])
def test_the_queries_on_outcomes_still_use_it(tmp_path: Path, where: str) -> None:
    """Each predicate that names an outcome is answered through the index, not a table scan."""
    with Store(tmp_path / "plan.sqlite") as store:
        sql = f"SELECT key FROM messages WHERE {where}"
        names = dict.fromkeys(re.findall(r":(\w+)", sql), 0.0)
        plan = " ".join(row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}", names))
    assert "USING INDEX messages_by_outcome" in plan
    assert "SCAN messages" not in plan
