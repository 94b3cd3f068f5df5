"""Mistakes at the command line get one line and exit 2 (or Nagios UNKNOWN), never a traceback.

Each input here once produced a traceback, created an empty store, or started a demo Postfix
(issue 11, items 7 and 12). They run through the real CLI (click's runner, in-process), and the
``run`` cases through a real subprocess.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.errors import StoreError
from mailwatch.store import Store


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr). Exceptions are not swallowed."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit 2, exactly one line on stderr starting ``mailwatch:``, naming what was wrong."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mailwatch: "), err
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(name="store_config")
def fixture_store_config(tmp_path: Path) -> Path:
    """A configuration whose store exists (created empty, with one scan recorded)."""
    config = tmp_path / "mailwatch.toml"
    config.write_text('[store]\npath = "mw.db"\n', encoding="utf-8")
    with Store(tmp_path / "mw.db") as store:
        now = datetime.now(UTC)
        store.record_failure("mta1", now, now, "down")
    return config


class TestOptionValues:
    """Option values out of range are usage errors on one line (item 12)."""

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["silence", "--class", "general", "--for", "99999999999d"], "--for"),
            (["silence", "--class", "general", "--for", "1" + "0" * 400 + "s"], "--for"),
            (["silence", "--class", "general", "--for", "91d"], "at most 90d"),
            (["silence", "--class", "general", "--for", "2bd"], "not business days"),
        ],
    )
    def test_silence_for(self, store_config: Path, args: list[str], needle: str) -> None:
        """An enormous, too long or business-day silence is refused before any work."""
        code, _, err = invoke("-c", str(store_config), *args, "--reason", "r", "--by", "me")
        assert_one_line_error(code, err, needle)

    def test_unsilence_enormous_id(self, store_config: Path) -> None:
        """An id past SQLite's integers is a usage error, not an OverflowError."""
        code, _, err = invoke("-c", str(store_config), "unsilence", "9" * 30, "--by", "me")
        assert_one_line_error(code, err, "SILENCE_ID")

    @pytest.mark.parametrize("hours", ["nan", "1e9", "inf", "-1", "0", "many"])
    def test_backlog_hours(self, store_config: Path, hours: str) -> None:
        """--hours must be a finite number of hours within a year."""
        code, _, err = invoke("-c", str(store_config), "backlog", "--hours", hours)
        assert_one_line_error(code, err, "--hours")

    def test_backlog_hours_in_range_still_works(self, store_config: Path) -> None:
        """A sensible value goes through."""
        code, out, _ = invoke("-c", str(store_config), "backlog", "--hours", "1.5")
        assert code == 0
        assert "no backlog recorded" in out

    def test_unknown_option_is_one_line(self) -> None:
        """A plain usage mistake is one line too, with where to look for help."""
        code, _, err = invoke("stuck", "--olderthan", "5m")
        assert_one_line_error(code, err, "--olderthan", "stuck --help")


class TestEnvironmentAndStore:
    """Bad environment variables and damaged stores (item 12)."""

    @pytest.mark.parametrize("value", ["{bad", "[1, 2", "not json"])
    def test_malformed_sources_variable(self, tmp_path: Path, value: str) -> None:
        """MAILWATCH_SOURCES that is not JSON names the variable."""
        code, _, err = invoke("classes", env={"MAILWATCH_SOURCES": value})
        assert_one_line_error(code, err, "MAILWATCH_SOURCES: not valid JSON")

    def test_corrupt_data_pages(self, tmp_path: Path) -> None:
        """A store whose data pages are garbage: one line naming the store, for every reader."""
        config = tmp_path / "mailwatch.toml"
        config.write_text('[store]\npath = "mw.db"\n', encoding="utf-8")
        with Store(tmp_path / "mw.db") as store:
            now = datetime.now(UTC)
            for index in range(3000):
                store.record_failure(f"src{index % 7}", now, now, "x" * 200)
        _checkpoint(tmp_path / "mw.db")
        _clobber_data_pages(tmp_path / "mw.db")
        code, _, err = invoke("-c", str(config), "stuck")
        assert (code, err.count("\n"), "Traceback" in err) == (1, 1, False), err
        assert err.startswith("mailwatch: cannot list messages: database disk image is malformed")
        code, out, _ = invoke("-c", str(config), "check")
        assert code == 3
        assert out.startswith("MAILWATCH UNKNOWN - ")
        with pytest.raises(StoreError, match="malformed"):
            CliRunner().invoke(cli, ["-c", str(config), "--debug", "stuck"],
                               catch_exceptions=False)  # fmt: skip

    def test_debug_shows_the_traceback(self, tmp_path: Path) -> None:
        """--debug lets the error through (click's runner re-raises it), even a handled one."""
        missing = {"MAILWATCH_STORE__PATH": str(tmp_path / "typo.db")}
        with pytest.raises(StoreError, match="no store at"):
            CliRunner().invoke(cli, ["--debug", "stuck"], env=missing, catch_exceptions=False)
        code, _, err = invoke("stuck", env=missing)
        assert (code, err.count("\n")) == (1, 1)


def _checkpoint(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _clobber_data_pages(path: Path) -> None:
    """Overwrite the middle of every page after the first two (schema intact, data not)."""
    page = 8192
    size = path.stat().st_size
    with path.open("r+b") as file:
        for number in range(2, size // page):
            file.seek(number * page + 100)
            file.write(b"\xff" * 4000)


class TestMissingStore:
    """A mistyped store path is refused, not created (item 7)."""

    @pytest.mark.parametrize("command", [["stuck"], ["backlog"], ["alerts"], ["show", "X1"],
                                         ["unsilence", "1", "--by", "me"]])  # fmt: skip
    def test_read_commands_refuse(self, tmp_path: Path, command: list[str]) -> None:
        """Exit non-zero with one line naming the path; no file (or directory) appears."""
        missing = tmp_path / "typo" / "mailwatch.db"
        code, out, err = invoke(*command, env={"MAILWATCH_STORE__PATH": str(missing)})
        assert code != 0
        assert "nothing stuck" not in out
        assert err.strip() == (
            f"mailwatch: no store at {missing} (check store.path; `mailwatch scan` or"
            " `mailwatch run` creates it)"
        )
        assert not missing.parent.exists()

    def test_check_is_unknown(self, tmp_path: Path) -> None:
        """The Nagios check answers UNKNOWN (exit 3) and creates nothing."""
        missing = tmp_path / "typo.db"
        code, out, _ = invoke("check", env={"MAILWATCH_STORE__PATH": str(missing)})
        assert code == 3
        assert out.startswith("MAILWATCH UNKNOWN - cannot read mailwatch state: no store at")
        assert not missing.exists()

    def test_readers_do_not_write(self, store_config: Path) -> None:
        """A read command works on a store it may not write (opened read-only)."""
        store = store_config.parent / "mw.db"
        _checkpoint(store)
        before = store.read_bytes()
        code, out, _ = invoke("-c", str(store_config), "stuck")
        assert code == 0
        assert "mta1" in out
        assert store.read_bytes() == before


def _mailwatch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwatch", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(name="clean_env")
def fixture_clean_env() -> dict[str, str]:
    """The environment without MAILWATCH_ variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILWATCH_")}


class TestRun:
    """``mailwatch run`` as a real process (items 7 and 12)."""

    def test_no_sources_without_demo_refuses(
        self, tmp_path: Path, clean_env: dict[str, str]
    ) -> None:
        """No sources and no --demo: a clear error, and no private Postfix is started."""
        config = tmp_path / "mailwatch.toml"
        config.write_text('[store]\npath = "mw.db"\n', encoding="utf-8")
        result = _mailwatch("-c", str(config), "run", "--demo-dir", str(tmp_path / "demo"),
                            env=clean_env, cwd=tmp_path)  # fmt: skip
        assert_one_line_error(result.returncode, result.stderr, "no sources configured",
                              "--demo")  # fmt: skip
        assert not (tmp_path / "demo").exists()

    def test_port_in_use(self, tmp_path: Path, clean_env: dict[str, str]) -> None:
        """A listen address already taken is one line, exit 2."""
        log = tmp_path / "mail.log"
        log.touch()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = tmp_path / "mailwatch.toml"
            config.write_text(
                f'[store]\npath = "mw.db"\n[http]\nlisten = "127.0.0.1:{port}"\n'
                f'[sources.log]\ntype = "maillog"\npath = "{log}"\n',
                encoding="utf-8",
            )
            result = _mailwatch("-c", str(config), "run", env=clean_env, cwd=tmp_path)
        assert_one_line_error(result.returncode, result.stderr, "address already in use")

    def test_empty_token_secret_refuses_to_start(
        self, tmp_path: Path, clean_env: dict[str, str]
    ) -> None:
        """An API token whose secret file is empty stops `run` before it listens."""
        (tmp_path / "token").write_text("\n", encoding="utf-8")
        (tmp_path / "token").chmod(0o600)
        log = tmp_path / "mail.log"
        log.touch()
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            '[store]\npath = "mw.db"\n[[http.tokens]]\nname = "ops"\n'
            'secret = { file = "token" }\n'
            f'[sources.log]\ntype = "maillog"\npath = "{log}"\n',
            encoding="utf-8",
        )
        result = _mailwatch("-c", str(config), "run", env=clean_env, cwd=tmp_path)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert f"http.tokens.0.secret: secret file {tmp_path / 'token'} is empty" in result.stderr
