"""The on-call read commands: light start-up, light pages (issue 13: < 0.5 s at 100k stuck).

No timings here (``bench/read_commands.py`` and ``bench/postfix_scan.py`` time them): these
tests pin what made them fast, so that a regression fails a test rather than a benchmark
nobody runs:

- what ``stuck`` and ``check`` import (each in a fresh interpreter: ``sys.modules`` after the
  command ran): not the configuration model (pydantic), the store's writer (structlog), the
  service, the web server, the fleet driver, ``holidays`` or RE2;
- they read the configuration keys they use with :mod:`mailwatch.config.essentials` (same
  rules and messages as the full load), and only for a configuration that passed the full
  validation before (:mod:`mailwatch.config.validated`): a broken or edited one is validated
  whole and every problem is listed, as before;
- every command is still registered, under its name, though imported only when it runs;
- the listing sorts only each matching row's sort key and row id, then reads and decodes the
  page's rows by id: pages by offset and by cursor are what judging every message in Python
  gives, and a cursor neither repeats nor skips a message when a scan changes the queue
  between pages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mailwatch.app.queries import decode_cursor, encode_cursor
from mailwatch.cli import COMMANDS, cli, load_command
from mailwatch.config import validated
from mailwatch.config.essentials import TOP_LEVEL_KEYS, load_essentials
from mailwatch.config.settings import Settings, load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.judgement import MessageFilter, judge, urgency
from mailwatch.core.model import Message, Recipient
from mailwatch.core.sla import evaluate
from mailwatch.errors import ConfigError
from mailwatch.store import Store
from mailwatch.store.listing import StoreView, select_page

HEAVY = (
    "pydantic", "pydantic_settings", "structlog", "asyncio", "aiohttp", "jinja2",
    "prometheus_client", "holidays", "psycopg", "importlib.metadata",
    "mailwatch.config.settings", "mailwatch.store.db", "mailwatch.app.service",
    "mailwatch.web", "mailwatch.sources", "mailwatch.fleet", "mailwatch.core.classify",
)  # fmt: skip
"""Modules (and packages) a read command must not import (RE2: see the next test)."""
SUBJECTS = ("Emergency recall - A Person", "MAPPA level 3 minutes", "Case allocation", "Lunch")


def _store(tmp_path: Path, count: int = 40) -> Path:
    """A config and store: held messages (stuck at once) and deferred ones, some over SLA."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "mw.db"}"\n', encoding="utf-8")
    settings = load(config)
    classifier = settings.classifier()
    classes = {c.name: c for c in classifier.all_classes}
    now = datetime.now(UTC)
    verdicts = []
    for i in range(count):
        arrival = now - timedelta(hours=(i % 5) * 30, seconds=60 + i // 3)  # ties in arrival
        message = Message(
            f"bulk/Q{i:08X}", "bulk", f"Q{i:08X}", "hold" if i % 3 == 0 else "deferred",
            arrival, 2000, "om@probation.example", (Recipient("ppcs@justice.example"),),
            subject=f"{SUBJECTS[i % len(SUBJECTS)]} {i}",
        )  # fmt: skip
        found = classifier.classify(message)
        verdicts.append(evaluate(message, found, classes[found.name], now))
    with Store(settings.store.path) as store:
        store.record_scan(
            "bulk", now, now, verdicts, count_by_class("bulk", classifier.all_classes, verdicts)
        )
    return config


def _imported_by(
    config: Path, args: list[str], heavy: tuple[str, ...] = HEAVY
) -> tuple[list[str], str]:
    """The ``heavy`` modules loaded by ``mailwatch ARGS`` in a new interpreter; its output.

    The user cache (validated configurations) is ``cache`` next to the configuration.
    """
    probe = (
        "import json, sys\nfrom mailwatch.cli import main\n"
        f"sys.argv = ['mailwatch', '-c', {str(config)!r}, *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\nMODULES', json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120,
        env=os.environ | {"XDG_CACHE_HOME": str(config.parent / "cache")},
    )  # fmt: skip
    output, _, modules = done.stdout.rpartition("\nMODULES ")
    loaded = json.loads(modules)
    return [m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in heavy)], output


@pytest.mark.parametrize(
    "args", [["stuck"], ["stuck", "--json"], ["stuck", "--priority", "P1"], ["check"]]
)
def test_read_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    """``stuck`` (table, JSON, a priority) and ``check`` answer without the heavy modules.

    The first run validates the new configuration whole (the model is imported); the next
    runs, of the same configuration, do not.
    """
    config = _store(tmp_path)
    first, _ = _imported_by(config, args)
    assert "pydantic" in first
    heavy, output = _imported_by(config, args)
    assert heavy == []
    assert "Q000000" in output or "MAILWATCH CRITICAL" in output  # it did answer


@pytest.mark.parametrize("args", [["stuck"], ["check"]])
def test_no_re2_unless_a_printed_reason_needs_it(tmp_path: Path, args: list[str]) -> None:
    """Held messages (their reason is their queue) and ``check`` (no row decoded): no RE2."""
    config = tmp_path / "mailwatch.toml"
    _store(tmp_path, 1)  # one held message
    _imported_by(config, ["config", "check", str(config)])
    _imported_by(config, args)  # validates the configuration whole, once
    heavy, output = _imported_by(config, args, (*HEAVY, "re2"))
    assert heavy == []
    assert "Q00000000" in output or "MAILWATCH CRITICAL" in output


def test_the_import_probe_sees_heavy_modules(tmp_path: Path) -> None:
    """The probe is not blind: ``classes`` needs the configuration model, and it shows."""
    heavy, output = _imported_by(_store(tmp_path, 1), ["classes"])
    assert "pydantic" in heavy
    assert "recall_emergency" in output


def test_a_broken_configuration_is_validated_whole(tmp_path: Path) -> None:
    """Validated once, then edited: ``stuck`` and ``check`` list every problem, and exit 2.

    The classes' problems too, which they do not read; fixed again, they answer.
    """
    config = _store(tmp_path, 1)
    good = config.read_text(encoding="utf-8")
    for args in (["stuck"], ["check"]):
        assert CliRunner().invoke(cli, ["-c", str(config), *args]).exit_code in (0, 2)
    config.write_text(good + '[classes.recall_emergency]\nstuck_after = "10 minuts"\n'
                      '[log]\nlevel = "loud"\n', encoding="utf-8")  # fmt: skip
    for args in (["stuck"], ["check"]):
        result = CliRunner().invoke(cli, ["-c", str(config), *args])
        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert all(line.startswith("mailwatch: config: ") for line in lines)
        assert {
            'mailwatch: config: classes.recall_emergency.stuck_after: "10 minuts" is not a'
            " duration (e.g. 45s, 10m, 2h10m, 1bd)",
            "mailwatch: config: log.level: Input should be 'debug', 'info', 'warning' or 'error'",
        } <= set(lines)
    config.write_text(good, encoding="utf-8")
    result = CliRunner().invoke(cli, ["-c", str(config), "stuck"])
    assert result.exit_code == 0
    assert "Q00000000" in result.stdout


def test_the_fingerprint_follows_the_file_the_settings_variables_and_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same bytes, path, settings variables and code: same; any of them changed: different."""
    config = tmp_path / "a.toml"
    config.write_text('[store]\npath = "x.db"\n', encoding="utf-8")
    first = validated.fingerprint(config)
    assert first is not None
    assert first == validated.fingerprint(config)
    monkeypatch.setenv("MAILWATCH_TOKEN", "not a setting")
    monkeypatch.setenv("MAILWATCH_SERVER", "https://elsewhere.example")
    assert validated.fingerprint(config) == first
    monkeypatch.setenv("MAILWATCH_UNDELIVERABLE_FOR", '"2h"')
    assert validated.fingerprint(config) != first
    monkeypatch.delenv("MAILWATCH_UNDELIVERABLE_FOR")
    config.write_text('[store]\npath = "y.db"\n', encoding="utf-8")
    assert validated.fingerprint(config) != first
    config.write_text('[store]\npath = "x.db"\n', encoding="utf-8")
    assert validated.fingerprint(config) == first
    monkeypatch.setattr(validated, "_PACKAGE", tmp_path)  # other code
    assert validated.fingerprint(config) != first
    assert validated.fingerprint(tmp_path / "missing.toml") is None


def test_the_cache_keeps_the_latest_fingerprints(tmp_path: Path) -> None:
    """At most KEEP, the newest kept; an unwritable cache is not an error."""
    for n in range(validated.KEEP + 3):
        validated.remember(f"{n:064x}")
    cache = validated.cache_file()
    assert cache is not None
    kept = cache.read_text(encoding="ascii").split()
    assert kept == [f"{n:064x}" for n in range(3, validated.KEEP + 3)]
    assert validated.was_validated(f"{validated.KEEP + 2:064x}")
    assert not validated.was_validated(f"{0:064x}")
    assert not validated.was_validated(None)


def test_no_home_directory_means_validating_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``XDG_CACHE_HOME`` and no home directory: nothing remembered, nothing raised."""
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert validated.cache_file() is None
    validated.remember(f"{1:064x}")
    assert not validated.was_validated(f"{1:064x}")


def test_every_command_is_registered_under_its_name() -> None:
    """Each entry of COMMANDS imports a click command of that name; help lists them all."""
    for name in COMMANDS:
        command = load_command(name)
        assert isinstance(command, click.Command)
        assert command.name == name
    result = CliRunner().invoke(cli, ["--help"])
    listed = result.stdout.split("Commands:")[1].split()
    assert set(COMMANDS) <= set(listed)


def test_the_essential_keys_are_the_settings_fields() -> None:
    """A misspelt top-level key is reported by the light load exactly as by the full one."""
    assert set(Settings.model_fields) == TOP_LEVEL_KEYS


BAD = [
    "[store]\npath = 5\n", '[log]\nlevel = "loud"\n', '[log]\nformat = "x"\n',
    'undeliverable_for = "x"\n', 'undeliverable_for = "2bd"\n', 'undeliverable_for = "400d"\n',
    "undeliverable_for = -1\n", "undeliverable_for = true\n", "stor = 1\n",
    '[store]\nretention = "12h"\n', '[store]\nretention = "2bd"\n', '[store]\npth = "x"\n',
    'undeliverable_for = "3d"\n[store]\nretention = "2d"\n', "store = 3\n", 'log = "x"\n',
    "[store\n", "[store]\naudit_retention = [1]\n",
]  # fmt: skip


@pytest.mark.parametrize("text", BAD)
def test_a_bad_essential_key_gets_the_full_loads_message(tmp_path: Path, text: str) -> None:
    """Same problems, same words, as :func:`mailwatch.config.settings.load`."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as full:
        load(path)
    with pytest.raises(ConfigError) as light:
        load_essentials(path)
    assert light.value.problems == full.value.problems


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("", {}),
        ('undeliverable_for = "36h"\n[store]\npath = "sub/mw.db"\n[log]\nlevel = "debug"\n', {}),
        ('[store]\npath = "x.db"\n', {"MAILWATCH_STORE__PATH": "/elsewhere/mw.db"}),
        ("", {"mailwatch_undeliverable_for": '"2h"', "MAILWATCH_LOG__FORMAT": "json"}),
        ("", {"MAILWATCH_UNDELIVERABLE_FOR": "7200", "MAILWATCH_STORE__RETENTION": '"40d"'}),
    ],
)
def test_good_essential_keys_equal_the_full_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str]
) -> None:
    """The values (relative paths, environment overrides included) are the full load's."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "good.toml"
    path.write_text(text, encoding="utf-8")
    full, light = load(path), load_essentials(path)
    assert light is not None
    assert (light.store_path, light.undeliverable_for, light.log_level, light.log_format) == (
        full.store.path, full.undeliverable_for.seconds, full.log.level, full.log.format,
    )  # fmt: skip


def test_a_whole_section_from_the_environment_defers_to_the_full_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MAILWATCH_STORE='{...}'`` is JSON the light load does not read: the CLI uses ``load``."""
    config = _store(tmp_path, 3)
    monkeypatch.setenv("MAILWATCH_STORE", json.dumps({"path": str(tmp_path / "mw.db")}))
    assert load_essentials(config) is None
    result = CliRunner().invoke(cli, ["-c", str(config), "stuck"])
    assert result.exit_code == 0, result.output
    assert "Q00000000" in result.stdout


def test_a_bad_store_path_is_one_line_naming_the_key(tmp_path: Path) -> None:
    """``stuck`` with ``store.path = 5``: exit 2, one line, the key named."""
    config = tmp_path / "mailwatch.toml"
    config.write_text("[store]\npath = 5\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["-c", str(config), "stuck"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "mailwatch: config: store.path: Input is not a valid path for <class 'pathlib.Path'>"
    ]


@pytest.mark.parametrize("stuck_only", [True, False])
def test_pages_sorted_on_row_ids_are_the_judgements_order(tmp_path: Path, stuck_only: bool) -> None:
    """Pages of 7 in a row, and one page of all, are every message judged and sorted."""
    _store(tmp_path, 40)
    now = datetime.now(UTC)
    since = now - timedelta(days=1)
    with Store(tmp_path / "mw.db") as store:
        every = [judge(m, now, since) for m in store.queued()]
    expected = [j.message.key for j in sorted(every, key=urgency) if j.stuck or not stuck_only]
    with StoreView(tmp_path / "mw.db") as view:
        whole, total = view.list_messages(now, since, MessageFilter(stuck_only))
        pages = []
        for offset in range(0, 42, 7):
            page, _ = view.list_messages(now, since, MessageFilter(stuck_only, limit=7,
                                                                   offset=offset))  # fmt: skip
            pages += page
    assert total == len(expected)
    assert [m.key for m in whole] == expected
    assert [m.key for m in pages] == expected


@pytest.mark.parametrize("stuck_only", [True, False])
def test_cursor_pages_survive_a_scan_between_pages(tmp_path: Path, stuck_only: bool) -> None:
    """Two messages leave (one of page 1, one later) before page 2 is asked for.

    Page 2 starts where page 1 ended; no message that stayed is repeated or skipped.
    """
    _store(tmp_path, 30)
    now = datetime.now(UTC)
    since = now - timedelta(days=1)
    wanted = MessageFilter(stuck_only, limit=10)
    with Store(tmp_path / "mw.db") as store:
        before = [
            m.key for m in select_page(store._db, now, since, MessageFilter(stuck_only)).messages
        ]
        first = select_page(store._db, now, since, wanted)
        gone = {first.messages[2].key, before[15]}
        store._db.execute("UPDATE messages SET status = 'left' WHERE key IN (?, ?)", sorted(gone))
        rest, after = [], first.after
        while after is not None:
            page = select_page(store._db, now, since, wanted, after)
            rest += [m.key for m in page.messages]
            after = page.after
    assert [m.key for m in first.messages] == before[:10]
    assert rest == [k for k in before[10:] if k not in gone]


@pytest.mark.parametrize(
    "text", ["", "x!", "e30", encode_cursor((0, 1, 2.0, "k"))[:-2], "WzIsMSwyLjAsImsiXQ"]
)
def test_a_cursor_the_server_did_not_give_is_refused(text: str) -> None:
    """Not base64, not JSON, not four values of the right types, a rank not 0/1: ValueError."""
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(text)


def test_a_cursor_round_trips() -> None:
    """What the server gives back is the place it encoded, exactly (the arrival too)."""
    place = (1, 3, 1765000000.123456, "mta1/ABC/1765000000")
    assert decode_cursor(encode_cursor(place)) == place
    assert decode_cursor(None) is None
