"""Operations commands on the real Postfix: the Nagios check, backlog, and audited actions."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.store import Store

pytestmark = pytest.mark.postfix


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path, postfix: PrivatePostfix) -> Path:
    """Watch the test Postfix; emergency recalls are stuck at once (SLA 0s)."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        f'[store]\npath = "mw.db"\n[sources.mta1]\ntype = "postfix"\n'
        f'config_dir = "{postfix.config_dir}"\n'
        '[classes.recall_emergency]\npriority = "P1"\nstuck_after = "0s"\n'
        "[[classes.recall_emergency.match]]\nsubject = 'emergency recall'\n"
    )
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process."""
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


class TestNagiosCheck:
    """Exit codes 0/1/2/3 with one status line and perfdata."""

    def test_unknown_before_any_scan(self, config: Path) -> None:
        """No scan yet: UNKNOWN (3)."""
        Store(config.parent / "mw.db").close()  # a missing store is UNKNOWN too: test_cli_errors
        code, out, _ = run(config, "check")
        assert code == 3
        assert out.startswith("MAILWATCH UNKNOWN - no scan recorded yet")

    def test_critical_with_perfdata_then_ok_for_other_priorities(
        self, postfix: PrivatePostfix, config: Path
    ) -> None:
        """A stuck P1 is CRITICAL with perfdata; a P2-only check of the same queue is OK."""
        postfix.inject([make_message("Emergency recall X1"), make_message("Court results")])
        postfix.wait_for_queue(2)
        assert run(config, "scan")[0] == 0
        code, out, _ = run(config, "check", "--priority", "P1")
        assert code == 2
        assert out == (
            "MAILWATCH CRITICAL - 1 stuck (recall_emergency=1) | recall_emergency_stuck=1;1;1;0\n"
        )
        code, out, _ = run(config, "check", "--priority", "P2", "--class", "court_result")
        assert code == 0
        assert out == "MAILWATCH OK - 0 stuck (none) | court_result_stuck=0;1;1;0\n"
        code, _, _ = run(config, "check", "--priority", "P1", "--warn", "1", "--crit", "5")
        assert code == 1

    def test_failing_source_is_unknown(self, postfix: PrivatePostfix, config: Path) -> None:
        """When the last scan of a source failed, the check cannot vouch: UNKNOWN."""
        broken = config.read_text().replace(str(postfix.config_dir), "/nonexistent/postfix")
        config.write_text(broken)
        run(config, "scan")
        code, out, _ = run(config, "check")
        assert code == 3
        assert "stale or failing sources: mta1" in out


class TestBacklog:
    """Backlog history with a sparkline, drain rate and ETA."""

    def test_backlog_lists_classes_with_history(
        self, postfix: PrivatePostfix, config: Path
    ) -> None:
        """After two scans the class with a backlog has a row; the empty ones do not."""
        postfix.inject([make_message("Emergency recall X2")])
        postfix.wait_for_queue(1)
        run(config, "scan")
        run(config, "scan")
        code, out, _ = run(config, "backlog", "--hours", "1")
        assert code == 0
        rows = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
        assert set(rows) == {"recall_emergency"}
        assert rows["recall_emergency"][3] == "1"
        assert rows["recall_emergency"][-1] == "never"  # not draining
        assert any(ch in out for ch in "▁▂▃▄▅▆▇█")


class _Sink:
    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Accept."""
        return "250 OK"


class TestActions:
    """hold, release, retry and flush: refused for unknown ids, audited, really done."""

    def test_held_p1_is_released_and_delivered(self, postfix: PrivatePostfix, config: Path) -> None:
        """A held P1 message is released with an audit record and then delivered."""
        postfix.inject([make_message("Emergency recall X3")])
        (entry,) = postfix.wait_for_queue(1)
        queue_id = str(entry["queue_id"])
        run(config, "scan")
        code, out, _ = run(config, "hold", queue_id, "--yes", "--by", "on-call A")
        assert code == 0, out
        assert postfix.queue()[0]["queue_name"] == "hold"
        run(config, "scan")
        _, stuck, _ = run(config, "stuck", "--json")
        assert json.loads(stuck)[0]["reason"] == "held"
        controller = Controller(_Sink(), hostname="127.0.0.1", port=postfix.relay_port)
        controller.start()
        try:
            code, _, _ = run(config, "release", queue_id, "--yes", "--by", "on-call B")
            assert code == 0
            code, _, _ = run(config, "retry", queue_id, "--yes", "--by", "on-call B")
            assert code == 0
            postfix.wait_for_queue(0, timeout=30)
        finally:
            controller.stop()
        with Store(config.parent / "mw.db") as store:
            trail = [
                (a.on_behalf_of, a.action, a.detail or "", a.actor) for a in store.audit_trail()
            ]
        assert trail[-1][:2] == ("on-call A", "hold")
        assert [t[:2] for t in trail[:2]] == [("on-call B", "retry"), ("on-call B", "release")]
        assert all(t[2].startswith("ok: ") for t in trail)
        assert {t[3] for t in trail} == {getpass.getuser()}  # the login name is the actor

    def test_unknown_message_is_refused(self, config: Path) -> None:
        """An id mailwatch does not know is refused: nothing runs, exit 1."""
        code, _, err = run(config, "hold", "ABCDEF123", "--yes")
        assert code == 1
        assert "no tracked message has id 'ABCDEF123'" in err

    def test_confirmation_required_without_a_terminal(self, config: Path) -> None:
        """Without --yes and without a terminal to ask on, the action is refused (exit 2)."""
        code, _, err = run(config, "flush")
        assert code == 2
        assert "without confirmation" in err

    def test_flush_is_audited(self, postfix: PrivatePostfix, config: Path) -> None:
        """Flush asks Postfix to retry the queue and records who did it."""
        code, out, _ = run(config, "flush", "--yes", "--by", "on-call C")
        assert code == 0, out
        with Store(config.parent / "mw.db") as store:
            (record,) = store.audit_trail(1)
        assert (record.actor, record.on_behalf_of, record.action, record.target) == (
            getpass.getuser(), "on-call C", "flush", "source mta1",
        )  # fmt: skip
