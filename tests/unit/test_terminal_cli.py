"""``classify``, ``show`` and ``stuck --show-subject`` write hostile subjects escaped."""

from __future__ import annotations

import base64
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.sla import evaluate
from mailwatch.parsing.eml import message_from_bytes
from mailwatch.store import Store

HOSTILE = "Emergency recall\r\x1b]0;pwned\x07\x1b[2JAll fine\u202e\x9b\x00"
RAW = (
    "From: om@probation.example\nTo: ppcs@justice.example\nSubject: =?utf-8?b?"
    + base64.b64encode(HOSTILE.encode()).decode()
    + "?=\n\nbody\n"
).encode()


def _assert_safe(out: str) -> None:
    for char in out:
        assert char == "\n" or unicodedata.category(char) not in {"Cc", "Cf"}, repr(char)


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path) -> Path:
    """A configuration whose store holds one deferred message with a hostile subject."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "mw.db"}"\n')
    settings = load(config)
    classifier = settings.classifier()
    now = datetime.now(UTC)
    message = message_from_bytes(RAW, source="mta1")
    message = message._replace(arrival=now - timedelta(days=3))
    result = classifier.classify(message)
    klass = classifier.get(result.name)
    assert klass is not None
    verdict = evaluate(message, result, klass, now)
    with Store(tmp_path / "mw.db") as store:
        store.record_scan("mta1", now, now, [verdict],
                          count_by_class("mta1", classifier.all_classes, [verdict]))  # fmt: skip
    return config


def test_classify_escapes_the_subject(config: Path, tmp_path: Path) -> None:
    """The subject line shows the escapes, not the sequences."""
    eml = tmp_path / "hostile.eml"
    eml.write_bytes(RAW)
    result = CliRunner().invoke(cli, ["-c", str(config), "classify", str(eml)])
    assert result.exit_code == 0, result.output
    _assert_safe(result.stdout)
    assert "\\x1b]0;pwned\\x07" in result.stdout


def test_show_escapes_every_field(config: Path) -> None:
    """``show``: the subject (and headers) escaped; ``--json`` keeps the real text."""
    result = CliRunner().invoke(cli, ["-c", str(config), "show", "eml"])
    assert result.exit_code == 0, result.output
    _assert_safe(result.stdout)
    assert "\\x1b[2JAll fine\\u{202e}" in result.stdout
    as_json = CliRunner().invoke(cli, ["-c", str(config), "show", "eml", "--json"])
    assert "\\u001b[2JAll fine\\u202e" in as_json.stdout  # JSON's own escaping


def test_stuck_show_subject_escapes(config: Path) -> None:
    """``stuck --show-subject``: the subject column is escaped."""
    result = CliRunner().invoke(cli, ["-c", str(config), "stuck", "--all", "--show-subject"])
    assert result.exit_code == 0, result.output
    _assert_safe(result.stdout)
    assert "Emergency recall\\x0d\\x1b]0;pwned" in result.stdout
