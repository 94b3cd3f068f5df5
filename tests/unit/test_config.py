"""Unit tests for mailwatch.config.settings: loading, validation messages, overrides."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.config import settings as config
from mailwatch.config.sources import ImapSourceConfig, MailLogSourceConfig, PostfixSourceConfig
from mailwatch.core.durations import Duration
from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Headers, Message, Priority, Recipient
from mailwatch.errors import ConfigError, MailwatchError

WriteConfig = Callable[[str], Path]

SHIPPED = [
    "canary",
    "recall_emergency",
    "recall_standard",
    "recall_notification",
    "risk_escalation",
    "safeguarding",
    "mappa",
    "breach",
    "allocation",
    "release",
    "court_result",
    "court_report",
    "victim_liaison",
    "general",
]


@pytest.fixture(name="clean_env", autouse=True)
def fixture_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MAILWATCH_* variable from the caller's environment leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MAILWATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(name="write_config")
def fixture_write_config(tmp_path: Path) -> WriteConfig:
    """Write TOML text to ``<tmp>/etc/mailwatch.toml`` and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "etc" / "mailwatch.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _problems(path: Path) -> list[str]:
    """The problems ``config.load`` reports for ``path`` (it must fail)."""
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return info.value.problems


def _subject_message(subject: str) -> Message:
    """A deferred message with this subject."""
    normalised = normalise_subject(subject)
    return Message(
        key="pf1/A1/1",
        source="pf1",
        queue_id="A1",
        queue="deferred",
        arrival=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        size=1,
        sender="om@probation.example",
        recipients=(Recipient("ppcs@justice.example"),),
        headers=Headers((("Subject", subject),)),
        subject=normalised.text,
        marking=normalised.marking,
    )


VALID = """
default_class = "general"

[store]
path = "state/mailwatch.db"

[log]
level = "debug"
format = "json"

[classes.multi_agency]
priority = "p1"
stuck_after = 300
description = "MARAC and other multi-agency meetings"
[[classes.multi_agency.match]]
subject = 'marac'
[[classes.multi_agency.match]]
senders = ["*.cjsm.net"]
headers = [{ name = "Importance", equals = "high" }]
priority = "P2"

[sources.mx1]
type = "postfix"
config_dir = "/etc/postfix-mx1"
interval = "15s"
"""


class TestValidFile:
    """A valid file loads into typed settings."""

    def test_summary(self, write_config: WriteConfig) -> None:
        """Every section of a valid file is read and typed."""
        path = write_config(VALID)
        settings = config.load(path)
        assert settings.store.path == path.parent / "state" / "mailwatch.db"
        assert (settings.log.level, settings.log.format) == ("debug", "json")
        assert settings.default_class == "general"
        assert settings.sources == {
            "mx1": PostfixSourceConfig(
                type="postfix", config_dir=Path("/etc/postfix-mx1"), interval=Duration(seconds=15)
            )
        }
        multi = settings.all_classes()["multi_agency"]
        assert (multi.priority, multi.stuck_after) == (Priority.P1, Duration(seconds=300))
        assert list(settings.all_classes()) == [*SHIPPED, "multi_agency"]

    def test_classifier_from_file(self, write_config: WriteConfig) -> None:
        """The file's classes classify, a rule's own priority included."""
        classifier = config.load(write_config(VALID)).classifier()
        result = classifier.classify(_subject_message("MARAC on Tuesday"))
        assert (result.name, result.priority, result.rule) == (
            "multi_agency",
            Priority.P1,
            "multi_agency rule 1",
        )

    def test_defaults_without_file(self) -> None:
        """No file: defaults and the shipped taxonomy."""
        settings = config.load(None)
        assert settings.store.path == Path("mailwatch.db")
        assert settings.log.level == "info"
        assert settings.sources == {}
        assert list(settings.all_classes()) == SHIPPED

    def test_empty_file_is_defaults(self, write_config: WriteConfig) -> None:
        """An empty file means all defaults."""
        assert config.load(write_config("")) == config.load(None)

    @pytest.mark.parametrize(
        ("written", "relative_to_file"),
        [("state/mw.db", "state/mw.db"), ("mw.db", "mw.db"), ("../var/mw.db", "../var/mw.db")],
    )
    def test_relative_store_path_resolves_against_file(
        self, write_config: WriteConfig, written: str, relative_to_file: str
    ) -> None:
        """A relative store path is relative to the config file's directory, not the cwd."""
        path = write_config(f'[store]\npath = "{written}"\n')
        assert config.load(path).store.path == path.parent / relative_to_file

    def test_relative_source_paths_resolve_against_file(self, write_config: WriteConfig) -> None:
        """Source paths (a log file, a Postfix config directory) are relative to the file too."""
        path = write_config(
            '[sources.mta1]\ntype = "postfix"\nconfig_dir = "etc/postfix"\n'
            '[sources.log]\ntype = "maillog"\npath = "log/maillog"\noutcomes_for = "mta1"\n'
        )
        sources = config.load(path).sources
        postfix, log = sources["mta1"], sources["log"]
        assert isinstance(postfix, PostfixSourceConfig)
        assert isinstance(log, MailLogSourceConfig)
        assert postfix.config_dir == path.parent / "etc/postfix"
        assert log.path == path.parent / "log/maillog"

    def test_relative_secret_and_ca_files_resolve_against_file(
        self, write_config: WriteConfig
    ) -> None:
        """Secret files and CA files of receivers and sources are relative to the file too."""
        path = write_config(
            '[receivers.hook]\ntype = "webhook"\nurl = "https://hooks.example/x"\n'
            'ca_file = "pki/ca.pem"\nhmac_secret = { file = "secrets/hook" }\n'
        )
        hook = config.load(path).receivers["hook"]
        assert hook.ca_file == path.parent / "pki/ca.pem"
        assert hook.hmac_secret.file == path.parent / "secrets/hook"  # type: ignore[union-attr]

    def test_absolute_store_path_is_kept(self, write_config: WriteConfig, tmp_path: Path) -> None:
        """An absolute store path is used as written."""
        target = tmp_path / "elsewhere" / "mw.db"
        assert config.load(write_config(f'[store]\npath = "{target}"\n')).store.path == target

    def test_file_class_replaces_shipped_class(self, write_config: WriteConfig) -> None:
        """A class named like a shipped one replaces it entirely (rules included)."""
        path = write_config(
            '[classes.mappa]\npriority = "P3"\nstuck_after = "1bd"\n'
            "[[classes.mappa.match]]\nsubject = 'mappa'\n"
        )
        settings = config.load(path)
        assert list(settings.all_classes()) == SHIPPED  # same place, no duplicate
        classifier = settings.classifier()
        mappa = classifier.get("mappa")
        assert mappa is not None
        assert (mappa.priority, mappa.stuck_after, len(mappa.rules)) == (
            Priority.P3,
            Duration(business_days=1),
            1,
        )
        # the shipped level-3 rule (P1) is gone with the shipped class
        assert classifier.classify(_subject_message("MAPPA level 3 meeting")).priority is (
            Priority.P3
        )

    def test_include_default_classes_false(self, write_config: WriteConfig) -> None:
        """Without the shipped taxonomy only the file's classes exist."""
        path = write_config(
            'include_default_classes = false\ndefault_class = "other"\n'
            '[classes.other]\npriority = "P4"\nstuck_after = "4h"\n'
            '[classes.recall]\npriority = "P1"\nstuck_after = "10m"\n'
            "[[classes.recall.match]]\nsubject = 'recall'\n"
        )
        classifier = config.load(path).classifier()
        assert [c.name for c in classifier.all_classes] == ["recall", "other"]
        assert classifier.classify(_subject_message("Emergency recall - Part A")).name == "recall"
        assert classifier.classify(_subject_message("Risk escalation")).name == "other"


class TestErrors:
    """Every problem is reported with its key path and a reason."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                '[classes.recall_emergency]\npriority = "P1"\nstuck_after = "10 minuts"\n',
                ['classes.recall_emergency.stuck_after: "10 minuts" is not a duration'],
            ),
            (
                '[classes.x]\npriority = "P1"\nstuck_after = true\n',
                ["classes.x.stuck_after: True is not a duration"],
            ),
            (
                '[classes.x]\npriority = "P9"\nstuck_after = "1h"\n',
                ["classes.x.priority: 'P9' is not a priority (P1, P2, P3 or P4)"],
            ),
            (
                '[classes.x]\npriority = 1\nstuck_after = "1h"\n',
                ["classes.x.priority: 1 is not a priority"],
            ),
            (
                '[classes.x]\nstuck_after = "1h"\n',
                ["classes.x.priority: required key is missing"],
            ),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n'
                '[[classes.x.match]]\nsubject = "(unclosed"\n',
                ["classes.x.match.0.subject: '(unclosed' is not a valid regular expression"],
            ),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n'
                '[[classes.x.match]]\nheaders = [{ name = "X-Case", regex = "[" }]\n',
                ["classes.x.match.0.headers.0.regex: '[' is not a valid regular expression"],
            ),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n'
                '[[classes.x.match]]\nheaders = [{ name = "X", equals = "a", regex = "b" }]\n',
                ["classes.x.match.0.headers.0: give exactly one of equals or regex"],
            ),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n'
                '[[classes.x.match]]\npriority = "urgent"\n',
                ["classes.x.match.0.priority: 'urgent' is not a priority"],
            ),
            ("bogus = 1\n", ["bogus: unknown key"]),
            ('[store]\npth = "x.db"\n', ["store.pth: unknown key"]),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\ncolour = "red"\n',
                ["classes.x.colour: unknown key"],
            ),
            (
                '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n'
                '[[classes.x.match]]\nsubjct = "typo"\n',
                ["classes.x.match.0.subjct: unknown key"],
            ),
            ('[sources.mta]\ntype = "sendmail"\n', ["sources.mta: ", "'sendmail'"]),
            ('[sources.mta]\nconfig_dir = "/etc/postfix"\n', ["sources.mta: ", "'type'"]),
            (
                '[sources.mx1]\ntype = "postfix"\ninterval = "fast"\n',
                ['sources.mx1.interval: "fast" is not a duration'],
            ),
            (
                '[sources.mx1]\ntype = "postfix"\nretries = 3\n',
                ["sources.mx1.retries: unknown key"],
            ),
            ('[sources]\nmx1 = "postfix"\n', ["sources.mx1: "]),
            (
                '[classes.BadName]\npriority = "P2"\nstuck_after = "1h"\n',
                ["classes: 'BadName' is not a valid name"],
            ),
            (
                '[classes.2fast]\npriority = "P2"\nstuck_after = "1h"\n',
                ["classes: '2fast' is not a valid name"],
            ),
            ('[sources.MX-1]\ntype = "postfix"\n', ["sources: 'MX-1' is not a valid name"]),
            ('[log]\nlevel = "loud"\n', ["log.level: "]),
            (
                'default_class = "nonexistent"\n',
                ["default_class 'nonexistent' is not a configured"],
            ),
            (
                "include_default_classes = false\n",
                ["default_class 'general' is not a configured class"],
            ),
        ],
    )
    def test_problem_names_key_path(
        self, write_config: WriteConfig, text: str, expected: list[str]
    ) -> None:
        """The single problem in the file is reported with its key path and reason."""
        problems = _problems(write_config(text))
        assert len(problems) == 1, problems
        assert all(part in problems[0] for part in expected), problems

    def test_every_problem_is_reported(self, write_config: WriteConfig) -> None:
        """Several independent problems are all listed, not just the first."""
        path = write_config(
            'unknown_top = 1\n[log]\nlevel = "loud"\n'
            '[classes.recall_emergency]\npriority = "P1"\nstuck_after = "10 minuts"\n'
            '[classes.x]\npriority = "P9"\nstuck_after = "1h"\n'
        )
        problems = _problems(path)
        assert len(problems) == 4
        joined = "\n".join(problems)
        for key in ("unknown_top", "log.level", "classes.recall_emergency.stuck_after"):
            assert key in joined
        assert "classes.x.priority" in joined

    def test_config_error_is_a_value_error_with_readable_text(
        self, write_config: WriteConfig
    ) -> None:
        """ConfigError is both a MailwatchError and a ValueError; its text lists problems."""
        path = write_config('bogus = 1\n[store]\npth = "x"\n')
        with pytest.raises(ValueError, match="unknown key") as info:
            config.load(path)
        assert isinstance(info.value, MailwatchError)
        assert isinstance(info.value, ConfigError)
        assert str(info.value).splitlines() == info.value.problems

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is one problem naming the path."""
        path = tmp_path / "nope.toml"
        assert _problems(path) == [f"{path}: no such file"]

    def test_directory_instead_of_file(self, tmp_path: Path) -> None:
        """A path that cannot be read is reported, not raised as OSError."""
        (problem,) = _problems(tmp_path)
        assert problem.startswith(f"{tmp_path}: cannot read")

    @pytest.mark.parametrize("text", ["x = [", "[classes.x\n", "a = 1\na = 2\n", "= 3\n"])
    def test_invalid_toml(self, write_config: WriteConfig, text: str) -> None:
        """Invalid TOML is one problem naming the path."""
        path = write_config(text)
        (problem,) = _problems(path)
        assert problem.startswith(f"{path}: not valid TOML (")

    def test_not_utf8(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 text is reported as such."""
        path = tmp_path / "latin1.toml"
        path.write_bytes(b'[store]\npath = "caf\xe9.db"\n')
        assert _problems(path) == [f"{path}: not UTF-8 text"]


class TestEnvironment:
    """MAILWATCH_<SECTION>__<KEY> variables override the file."""

    def test_store_path_override_without_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The variable sets the store path when there is no file."""
        monkeypatch.setenv("MAILWATCH_STORE__PATH", "/var/lib/mailwatch/db.sqlite")
        assert config.load(None).store.path == Path("/var/lib/mailwatch/db.sqlite")

    def test_store_path_override_beats_file(
        self, monkeypatch: pytest.MonkeyPatch, write_config: WriteConfig
    ) -> None:
        """The variable wins over the file's value."""
        monkeypatch.setenv("MAILWATCH_STORE__PATH", "/var/lib/mailwatch/db.sqlite")
        path = write_config('[store]\npath = "file.db"\n[log]\nlevel = "debug"\n')
        settings = config.load(path)
        assert settings.store.path == Path("/var/lib/mailwatch/db.sqlite")
        assert settings.log.level == "debug"

    def test_override_merges_with_file_section(
        self, monkeypatch: pytest.MonkeyPatch, write_config: WriteConfig
    ) -> None:
        """Overriding one key of a section keeps the file's other keys of that section."""
        monkeypatch.setenv("MAILWATCH_LOG__FORMAT", "console")
        settings = config.load(write_config('[log]\nlevel = "warning"\nformat = "json"\n'))
        assert (settings.log.level, settings.log.format) == ("warning", "console")

    def test_invalid_override_names_key_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad value from the environment is reported like a bad value in the file."""
        monkeypatch.setenv("MAILWATCH_LOG__LEVEL", "loud")
        (problem,) = _problems_none()
        assert problem.startswith("log.level: ")

    def test_default_class_override(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Top-level keys can be overridden too, and are validated."""
        monkeypatch.setenv("MAILWATCH_DEFAULT_CLASS", "court_report")
        classifier = config.load(None).classifier()
        assert classifier.default.name == "court_report"
        assert classifier.classify(_subject_message("Team meeting")).name == "court_report"


def _problems_none() -> list[str]:
    """The problems ``config.load(None)`` reports (it must fail)."""
    with pytest.raises(ConfigError) as info:
        config.load(None)
    return info.value.problems


class TestImapSource:
    """IMAP source settings: secrets by reference, TLS by default, reserved folder names."""

    BASE = '[sources.duty]\ntype = "imap"\nhost = "imap.example"\nuser = "duty"\n'

    def test_password_from_environment(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The password is named by variable, read when used, and STARTTLS is the default."""
        path = write_config(self.BASE + 'password = { env = "DUTY_IMAP_PASSWORD" }\n')
        source = config.load(path).sources["duty"]
        assert isinstance(source, ImapSourceConfig)
        assert source.security == "starttls"
        assert source.verify is True
        monkeypatch.setenv("DUTY_IMAP_PASSWORD", "s3cret")
        assert source.password is not None
        assert source.password.read() == "s3cret"
        monkeypatch.delenv("DUTY_IMAP_PASSWORD")
        with pytest.raises(LookupError, match="DUTY_IMAP_PASSWORD is not set"):
            source.password.read()

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            ("", "give exactly one of password or token"),
            ('password = { env = "A" }\ntoken = { env = "B" }\n', "exactly one of password"),
            ('password = { env = "A" }\nsecurity = "plain"\n', "only allowed on loopback"),
            ('password = { env = "A" }\nfolders = ["INBOX", "hold"]\n', "'hold' is reserved"),
            ('password = { env = "A", file = "/x" }\n', "give exactly one of env or file"),
            ('password = "inline-secret"\n', "sources.duty.password"),
        ],
    )
    def test_bad_settings_are_named(
        self, write_config: WriteConfig, extra: str, message: str
    ) -> None:
        """Each mistake is reported with the source's key path and a plain reason."""
        with pytest.raises(ConfigError) as raised:
            config.load(write_config(self.BASE + extra))
        text = "\n".join(raised.value.problems)
        assert message in text
        assert "sources.duty" in text
        assert "inline-secret" not in text  # a secret written inline is not echoed back


class TestWarnings:
    """config check warns about setups that are valid but defeat their purpose."""

    def test_alert_relay_that_is_a_watched_host(self, write_config: WriteConfig) -> None:
        """An email receiver whose relay is also a watched IMAP host is flagged."""
        path = write_config(
            '[sources.box]\ntype = "imap"\nhost = "mail.example"\nuser = "u"\n'
            'password = { env = "P" }\n'
            '[receivers.duty_managers]\ntype = "email"\nhost = "mail.example"\n'
            'sender = "mw@x.example"\nto = ["dm@x.example"]\n'
        )
        warnings = config.load(path).warnings()
        assert any("receivers.duty_managers: the alert relay mail.example is also a watched"
                   in w for w in warnings)  # fmt: skip
        assert any("no receiver ops is configured" in w for w in warnings)

    def test_separate_relay_is_fine(self, write_config: WriteConfig) -> None:
        """A relay that is not watched raises no relay warning."""
        path = write_config(
            '[receivers.duty_managers]\ntype = "email"\nhost = "relay.example"\n'
            'sender = "mw@x.example"\nto = ["dm@x.example"]\n'
        )
        assert not [w for w in config.load(path).warnings() if "alert relay" in w]
