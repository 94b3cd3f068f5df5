"""The command line on a real Postfix and a real store: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.store import Store

pytestmark = pytest.mark.postfix


@pytest.fixture(name="config_file")
def fixture_config_file(tmp_path: Path, postfix: PrivatePostfix) -> Path:
    """A configuration watching the test Postfix, with a short SLA for court results."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        f"""
[store]
path = "mailwatch.db"

[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"

[classes.court_result]
priority = "P2"
stuck_after = "0s"
[[classes.court_result.match]]
subject = 'court results?'
"""
    )
    return path


def run(config: Path | None, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns exit code, stdout, stderr."""
    runner = CliRunner()
    argv = (["-c", str(config)] if config else []) + list(args)
    result = runner.invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(name="scanned")
def fixture_scanned(postfix: PrivatePostfix, config_file: Path) -> list[str]:
    """Three messages injected and scanned once; returns their queue ids."""
    subjects = ["Court results 1 Dec", "Emergency recall X9", "MASH referral Y"]
    postfix.inject([make_message(s, to=f"team{i}@dest{i}.example") for i, s in enumerate(subjects)])
    entries = postfix.wait_for_queue(3)
    code, _, err = run(config_file, "scan")
    assert code == 0, err
    return [str(e["queue_id"]) for e in entries]


class TestScanAndStuck:
    """scan prints per-class counts; stuck lists what is stuck, most urgent first."""

    def test_scan_prints_every_class(self, scanned: list[str], config_file: Path) -> None:
        """The scan table has a row per class, zeros included, and the court result is stuck."""
        code, out, _ = run(config_file, "scan")
        assert code == 0
        lines = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
        assert lines["court_result"][3:5] == ["1", "1"]
        assert lines["recall_emergency"][3:5] == ["1", "0"]
        assert lines["breach"][3:5] == ["0", "0"]

    def test_stuck_json_and_filters(self, scanned: list[str], config_file: Path) -> None:
        """Stuck --json lists the stuck court result with its delay reason, no subject."""
        code, out, _ = run(config_file, "stuck", "--json")
        assert code == 0
        items = json.loads(out)
        assert [i["class"] for i in items] == ["court_result"]
        assert "Connection refused" in items[0]["reason"]
        assert items[0]["recipient_domains"] == ["dest0.example"]
        assert "subject" not in items[0]
        assert "Court results" not in out
        code, out, _ = run(config_file, "stuck", "--json", "--all", "--priority", "P1")
        assert sorted(i["class"] for i in json.loads(out)) == ["recall_emergency", "safeguarding"]
        code, out, _ = run(config_file, "stuck", "--json", "--older-than", "2h")
        assert json.loads(out) == []

    def test_stuck_table_and_subjects_on_request(
        self, scanned: list[str], config_file: Path
    ) -> None:
        """The table shows the source's last scan; subjects only with --show-subject."""
        code, out, _ = run(config_file, "stuck")
        assert code == 0
        assert "source mta1: last scan" in out
        assert "court_result" in out
        assert "Court results" not in out
        code, out, _ = run(config_file, "stuck", "--show-subject")
        assert "Court results 1 Dec" in out

    def test_show_by_queue_id(self, scanned: list[str], config_file: Path) -> None:
        """Show prints every field of a message found by its queue id."""
        for queue_id in scanned:
            code, out, _ = run(config_file, "show", queue_id)
            assert code == 0
            fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
            assert fields["queue id"] == queue_id
            assert fields["source"] == "mta1"
            assert fields["status"] == "queued"
            assert fields["header Subject"]


class TestBadInput:
    """Bad input gets one clear line and a non-zero exit, never a traceback."""

    def test_bad_duration_option(self, config_file: Path) -> None:
        """--older-than with a typo names the option and the bad value."""
        code, _, err = run(config_file, "stuck", "--older-than", "10 minuts")
        assert code == 2
        assert "--older-than" in err
        assert "is not a duration" in err

    def test_unknown_class_and_priority(self, config_file: Path) -> None:
        """Unknown --class and --priority values are rejected with exit 2."""
        assert run(config_file, "stuck", "--class", "nope")[0] == 2
        code, _, err = run(config_file, "stuck", "--priority", "P7")
        assert code == 2
        assert "not a priority" in err

    def test_unknown_message(self, config_file: Path) -> None:
        """Show of an id nobody knows exits 1 with a one-line message."""
        Store(config_file.parent / "mailwatch.db").close()
        code, _, err = run(config_file, "show", "NOSUCHID")
        assert code == 1
        assert err.strip() == "mailwatch: no tracked message has id 'NOSUCHID'"

    def test_bad_config_lists_every_error(self, tmp_path: Path) -> None:
        """Config check prints each error with its key path and exits 2."""
        bad = tmp_path / "bad.toml"
        bad.write_text('[classes.recall_emergency]\npriority = "P1"\nstuck_after = "10 minuts"\n'
                       '[store]\npaht = "x"\n')  # fmt: skip
        code, _, err = run(None, "config", "check", str(bad))
        assert code == 2
        assert 'classes.recall_emergency.stuck_after: "10 minuts" is not a duration' in err
        assert "store.paht: unknown key" in err
        code, _, err = run(bad, "stuck")
        assert code == 2
        assert "config: classes.recall_emergency.stuck_after" in err

    def test_good_config_summary(self, config_file: Path) -> None:
        """A valid file gets exit 0 and a one-line summary."""
        code, out, _ = run(None, "config", "check", str(config_file))
        assert code == 0
        assert out.count("\n") == 1
        assert "OK: 14 classes (6 P1), 1 sources" in out

    def test_scan_without_sources(self, tmp_path: Path) -> None:
        """Scan with no configured source says what to do, exit 2."""
        empty = tmp_path / "empty.toml"
        empty.write_text("")
        code, _, err = run(empty, "scan")
        assert code == 2
        assert "no sources configured" in err


class TestClassify:
    """classify explains the decision for a message file."""

    def test_classify_eml(self, tmp_path: Path) -> None:
        """An encoded, marked, forwarded emergency recall is explained rule by rule."""
        eml = tmp_path / "m.eml"
        eml.write_bytes(
            b"From: om@probation.example\r\nTo: ppcs@justice.example\r\n"
            b"Subject: FW: =?utf-8?q?=5BOFFICIAL-SENSITIVE=5D_Emergency_recall?= X1\r\n\r\nbody\r\n"
        )
        code, out, _ = run(None, "classify", str(eml))
        assert code == 0
        fields = dict(
            line.split(None, 1) for line in out.splitlines() if not line.startswith("matched")
        )
        assert fields["class"].strip() == "recall_emergency"
        assert fields["priority"].strip() == "P1"
        assert fields["marking"].strip() == "OFFICIAL-SENSITIVE"
        assert "term 'emergency recall'" in out

    def test_classify_garbage_does_not_crash(self, tmp_path: Path) -> None:
        """Binary garbage classifies as general rather than raising."""
        eml = tmp_path / "junk.eml"
        eml.write_bytes(b"\xff\xfe\x00garbage\x00\n\n\x80")
        code, out, _ = run(None, "classify", str(eml))
        assert code == 0
        assert out.startswith("class       general")


class TestDemo:
    """The README's first command: the demo starts its own Postfix and shows what is stuck."""

    def test_demo_shows_held_messages(self, tmp_path: Path) -> None:
        """Without a configured source the demo starts a private Postfix; held mail is stuck."""
        config = tmp_path / "demo.toml"
        config.write_text('[store]\npath = "demo.db"\n')
        state = tmp_path / "state"
        try:
            code, out, err = run(config, "demo", "--dir", str(state))
            assert code == 0, err
            assert "Started a private Postfix" in out
            held = [line for line in out.splitlines() if line.endswith(" held  held")]
            assert len(held) == 2  # the WHY and REASON columns both say held
            assert "recall_emergency" in out
            code, out, _ = run(config, "stuck", "--json")
            assert sorted(i["class"] for i in json.loads(out)) == [
                "recall_emergency",
                "safeguarding",
            ]
        finally:
            ports = json.loads((state / "ports.json").read_text())
            PrivatePostfix.create(state / "postfix", smtp_port=ports["smtp"],
                                  relay_port=ports["relay"]).stop()  # fmt: skip
