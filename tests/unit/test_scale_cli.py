"""Scale: the read commands and ``scan`` at a large backlog (issue 13), checked by behaviour.

No timings here (those are in ``bench/``): these tests pin the properties that make the
commands fast at 100,000 messages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.cli.render import json_chunks
from mailwatch.config.calendar import SUPPORTED
from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.model import Message, Recipient
from mailwatch.core.sla import evaluate
from mailwatch.store import Store
from mailwatch.store.rows import decode_message


def test_scan_returns_nothing_from_the_top_level_coroutine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``asyncio.run`` returns is ``None``: 3.11 reprs it on SIGINT (CPython #112559)."""
    results: list[object] = []
    real_run = asyncio.run

    def recording_run(main: Coroutine[Any, Any, object]) -> object:
        result = real_run(main)
        results.append(result)
        return result

    monkeypatch.setattr("mailwatch.cli.service.asyncio.run", recording_run)
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "mw.db"}"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{tmp_path / "no-postfix"}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["-c", str(config), "scan", "--json"])
    assert '"source": "mta1"' in result.stdout  # the outcomes still reach the output
    assert results == [None]


def _held_store(tmp_path: Path, count: int) -> Path:
    """A config whose store holds ``count`` held (so stuck) messages of source ``bulk``."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "mw.db"}"\n', encoding="utf-8")
    settings = load(config)
    classifier = settings.classifier()
    classes = {c.name: c for c in classifier.all_classes}
    now = datetime.now(UTC)
    verdicts = []
    for i in range(count):
        arrival = now - timedelta(seconds=60 + i)
        message = Message(
            f"bulk/H{i:08X}", "bulk", f"H{i:08X}", "hold", arrival, 2000, "om@probation.example",
            (Recipient("ppcs@justice.example"),), subject="Emergency recall - A Person",
        )  # fmt: skip
        found = classifier.classify(message)
        verdicts.append(evaluate(message, found, classes[found.name], now))
    with Store(settings.store.path) as store:
        store.record_scan(
            "bulk", now, now, verdicts, count_by_class("bulk", classifier.all_classes, verdicts)
        )
    return config


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the message rows decoded into Python objects by the listing."""
    calls = [0]
    real = decode_message

    def counting(*args: Any) -> Any:
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr("mailwatch.store.listing.decode_message", counting)
    return calls


class TestStuckPages:
    """``stuck`` shows a page (50 by default) and says how many more; it decodes only those."""

    def test_table_shows_the_default_page_and_a_footer(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """50 rows by default, then how many more and how to see them; 50 rows decoded."""
        config = _held_store(tmp_path, 60)
        decoded = _count_decodes(monkeypatch)
        result = CliRunner().invoke(cli, ["-c", str(config), "stuck"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        rows = [line for line in result.stdout.splitlines() if line.startswith("H0")]
        assert len(rows) == 50
        assert "10 more; use --limit N, or --limit 0 for every one" in result.stdout
        assert decoded[0] == 50

    def test_limit_zero_shows_every_one(self, tmp_path: Path) -> None:
        """``--limit 0`` lists all, with no footer."""
        config = _held_store(tmp_path, 60)
        result = CliRunner().invoke(cli, ["-c", str(config), "stuck", "--limit", "0"])
        assert sum(1 for line in result.stdout.splitlines() if line.startswith("H0")) == 60
        assert "more;" not in result.stdout

    def test_json_is_a_page_with_the_footer_on_stderr(self, tmp_path: Path) -> None:
        """``--json`` pages too (most urgent first); stdout stays one JSON document."""
        config = _held_store(tmp_path, 60)
        result = CliRunner().invoke(cli, ["-c", str(config), "stuck", "--json", "--limit", "7"])
        items = json.loads(result.stdout)
        assert [i["id"] for i in items] == [f"bulk/H{i:08X}" for i in range(59, 52, -1)]
        assert "53 more" in result.stderr

    def test_check_counts_in_sql_and_decodes_no_row(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``check`` counts in SQL: no message row becomes a Python object."""
        config = _held_store(tmp_path, 60)
        decoded = _count_decodes(monkeypatch)
        result = CliRunner().invoke(cli, ["-c", str(config), "check", "--stale", "100d"])
        assert result.stdout.startswith("MAILWATCH CRITICAL - 60 stuck"), result.stdout
        assert decoded[0] == 0


def test_json_chunks_write_what_json_dumps_writes() -> None:
    """The streamed JSON list is byte for byte the one-string form."""
    for items in ([], [{"a": 1, "b": [1, 2]}], [{"a": "x\ny"}, {"c": {"d": None}}]):
        assert "".join(json_chunks(items)) == json.dumps(items, indent=2) + "\n"


def test_the_calendar_shortcut_names_only_supported_subdivisions() -> None:
    """Every pair validated without importing ``holidays`` is one ``holidays`` supports."""
    import holidays

    for country, subdivision in SUPPORTED:
        assert holidays.country_holidays(country, subdiv=subdivision, years=2026)


def test_read_commands_start_without_holidays_or_source_adapters(tmp_path: Path) -> None:
    """``stuck`` and ``check`` import neither ``holidays`` nor the source adapters (start-up)."""
    config = _held_store(tmp_path, 3)
    probe = (
        "import sys\nfrom mailwatch.cli import cli\n"
        "for args in (['stuck'], ['check', '--stale', '100d']):\n"
        "    try:\n"
        f"        cli(['-c', {str(config)!r}, *args], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = [m for m in ('holidays', 'mailwatch.sources.factory', 'aioimaplib')"
        " if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    ).stdout
    assert "LOADED []" in out, out
