"""`classify --near-misses` on a real store filled by a real Postfix scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.store import Store

pytestmark = pytest.mark.postfix

SUBJECTS = [
    "Recall discussion at Friday's team meeting",  # general, holds "recall": a near miss
    "Safeguarding week: bake sale",  # safeguarding set aside by unless 'week'
    "Team lunch",  # general, no P1 vocabulary
    "Emergency recall - Bogus Q",  # P1: not a near miss
]


def run(config: Path, *args: str) -> tuple[int, str]:
    """Run the CLI in-process; exit code and stdout (stderr folded in)."""
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path, postfix: PrivatePostfix) -> Path:
    """A configuration watching the test Postfix, its queue scanned once."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "mw.db"}"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
    )
    postfix.inject([make_message(s) for s in SUBJECTS])
    postfix.wait_for_queue(len(SUBJECTS))
    code, out = run(path, "scan")
    assert code == 0, out
    return path


def test_counts_only_by_default(config: Path) -> None:
    """Terms with counts and unless set-asides; no subject in the output."""
    code, out = run(config, "classify", "--near-misses", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["read"] == 3  # the three general messages
    terms = {t["term"]: t for t in report["terms"]}
    assert terms["recall"]["count"] == 1
    assert terms["safeguarding"]["count"] == 1
    assert terms["safeguarding"]["set_aside"] == 1
    assert all("subjects" not in t for t in report["terms"])
    code, text = run(config, "classify", "--near-misses")
    assert code == 0
    assert "SET ASIDE" in text
    for subject in SUBJECTS:
        assert subject not in text


def test_subjects_on_request_are_audited(config: Path, tmp_path: Path) -> None:
    """--show-subject lists subjects under their term and writes an audit record."""
    code, out = run(config, "classify", "--near-misses", "--show-subject")
    assert code == 0, out
    assert "recall: Recall discussion at Friday's team meeting" in out
    assert "Team lunch" not in out
    assert "Emergency recall" not in out
    with Store(tmp_path / "mw.db") as store:
        record = store.audit_trail(1)[0]
    assert (record.action, record.target) == ("view", "near-miss subjects")
