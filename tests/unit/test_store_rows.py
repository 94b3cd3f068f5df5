"""Unit tests for the store's fast paths: JSON columns as json.dumps wrote them, page size."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.model import Headers, Recipient
from mailwatch.store import Store
from mailwatch.store.db import PAGE_SIZE
from mailwatch.store.rows import headers_json, recipients_json

TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=20)  # surrogates too


class TestJsonColumns:
    """``headers_json`` and ``recipients_json`` are byte for byte ``json.dumps``."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(st.tuples(TEXT, TEXT), max_size=6))
    def test_headers(self, items: list[tuple[str, str]]) -> None:
        """Any names and values: quotes, backslashes, control and non-ASCII characters."""
        assert headers_json(Headers(items)) == json.dumps(tuple(items))

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(st.tuples(TEXT, st.none() | TEXT), max_size=4))
    def test_recipients(self, pairs: list[tuple[str, str | None]]) -> None:
        """Addresses with or without a delay reason (``null``)."""
        recipients = [Recipient(a, r) for a, r in pairs]
        assert recipients_json(recipients) == json.dumps([[a, r] for a, r in pairs])

    @pytest.mark.parametrize("value", ['"quoted" \\ back', "\x00\x1f\x7f", "\ud800 lone", "\u2028"])
    def test_awkward_strings_round_trip(self, value: str) -> None:
        """What json.dumps escapes is escaped the same way, and reads back the same."""
        assert json.loads(headers_json(Headers([("Subject", value)]))) == [["Subject", value]]


class TestPageSize:
    """New stores get 8 KiB pages; existing ones keep theirs."""

    def test_new_store(self, tmp_path: Path) -> None:
        """A store created now uses ``PAGE_SIZE`` and WAL."""
        with Store(tmp_path / "new.sqlite") as store:
            assert store._db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 8192
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_existing_store_keeps_its_page_size(self, tmp_path: Path) -> None:
        """A store made with 4 KiB pages opens, migrates and keeps 4 KiB pages."""
        path = tmp_path / "old.sqlite"
        old = sqlite3.connect(path)
        old.execute("PRAGMA page_size=4096")
        old.execute("PRAGMA journal_mode=WAL")
        old.close()
        with Store(path) as store:
            assert store._db.execute("PRAGMA page_size").fetchone()[0] == 4096
            assert store.schema_version > 0
