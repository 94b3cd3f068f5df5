"""Config values that would crash or spin at run time are refused; unsafe set-ups are reported.

Issue 11 item 11: ranges (finite, positive, bounded durations), secrets (missing, empty,
world-readable, unset), URL schemes, and an HTTP listener on every interface.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.config import settings as config
from mailwatch.config.checks import checks
from mailwatch.errors import ConfigError

WriteConfig = Callable[[str], Path]


@pytest.fixture(name="clean_env", autouse=True)
def fixture_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MAILWATCH_* variable from the caller's environment leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MAILWATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(name="write_config")
def fixture_write_config(tmp_path: Path) -> WriteConfig:
    """Write TOML text to ``<tmp>/mailwatch.toml`` and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "mailwatch.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def problems(path: Path) -> list[str]:
    """What ``config.load`` refuses ``path`` for (it must refuse it)."""
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return info.value.problems


POSTFIX = '[sources.mta1]\ntype = "postfix"\n'
CLASS = '[classes.recall_emergency]\npriority = "P1"\n'


class TestRanges:
    """Durations and numbers are finite, positive where they must be, and bounded."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (CLASS + 'stuck_after = "999999999d"', "classes.recall_emergency.stuck_after: "),
            (CLASS + "stuck_after = nan", "classes.recall_emergency.stuck_after: nan is not"),
            (CLASS + "stuck_after = inf", "classes.recall_emergency.stuck_after: inf is not"),
            (CLASS + "stuck_after = -5", "classes.recall_emergency.stuck_after: -5 is not"),
            (CLASS + 'stuck_after = "367d"', "is too long (at most 366d)"),
            (CLASS + 'stuck_after = "261bd"', "is too long (at most 260 business days)"),
            (CLASS + 'stuck_after = "9' * 1 + "9" * 400 + 's"', "is too long"),
            (POSTFIX + "interval = 0", "sources.mta1.interval: 0s is too short (at least 1s)"),
            (POSTFIX + 'interval = "0s"', "sources.mta1.interval: 0s is too short"),
            (POSTFIX + "interval = -1", "sources.mta1.interval: -1 is not a duration"),
            (POSTFIX + "interval = inf", "sources.mta1.interval: inf is not a duration"),
            (POSTFIX + 'interval = "2d"', "sources.mta1.interval: 2d is too long (at most 1d)"),
            (POSTFIX + 'interval = "1bd"', "use clock time here"),
            (POSTFIX + "timeout = 0", "sources.mta1.timeout: 0s is too short (at least 1s)"),
            ('undeliverable_for = "400d"', "undeliverable_for: 400d is too long"),
            ('[store]\nretention = "99999999999d"', "store.retention: "),
            ('[[alerts]]\nname = "x"\ncondition = "stuck"\nrepeat_every = "0s"',
             "alerts.0.repeat_every: 0s is too short"),
            ('[receivers.am]\ntype = "alertmanager"\nurls = ["http://a:9093"]\ntimeout = 0',
             "receivers.am.timeout: Input should be greater than 0"),
            ('[receivers.am]\ntype = "alertmanager"\nurls = ["http://a:9093"]\ntimeout = nan',
             "receivers.am.timeout: Input should be a finite number"),
            ('[receivers.am]\ntype = "alertmanager"\nurls = ["http://a:9093"]\n'
             "resend_every = inf", "receivers.am.resend_every: Input should be a finite number"),
        ],
    )  # fmt: skip
    def test_refused_with_key_path(
        self, write_config: WriteConfig, text: str, expected: str
    ) -> None:
        """Each value is refused, the message naming the key path."""
        found = problems(write_config(text))
        assert any(expected in p for p in found), found

    def test_sensible_values_pass(self, write_config: WriteConfig) -> None:
        """The edges that are fine: 0s SLA (stuck at once), 1s interval, 366 days, 260bd."""
        settings = config.load(write_config(
            CLASS + 'stuck_after = "0s"\n[classes.victim_liaison]\npriority = "P2"\n'
            'stuck_after = "260bd"\n[classes.mappa]\npriority = "P1"\nstuck_after = "366d"\n'
            + POSTFIX + 'interval = "1s"\ntimeout = "1d"\n'
        ))  # fmt: skip
        assert settings.all_classes()["victim_liaison"].stuck_after.business_days == 260


class TestUrls:
    """Receivers only talk HTTP(S)."""

    @pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/", "gopher://x", "hooks",
                                     "http://", "javascript:alert(1)"])  # fmt: skip
    def test_webhook_url(self, write_config: WriteConfig, url: str) -> None:
        """A webhook URL that is not http(s) with a host is refused."""
        text = f'[receivers.hook]\ntype = "webhook"\nurl = "{url}"\n'
        assert any(p.startswith("receivers.hook.url: ") and "is not an http" in p
                   for p in problems(write_config(text)))  # fmt: skip

    def test_alertmanager_urls(self, write_config: WriteConfig) -> None:
        """Every Alertmanager URL is checked, by index."""
        text = '[receivers.am]\ntype = "alertmanager"\nurls = ["https://am:9093", "file:///x"]\n'
        assert any(p.startswith("receivers.am.urls.1: ") for p in problems(write_config(text)))

    def test_http_and_https_pass(self, write_config: WriteConfig) -> None:
        """Both schemes are fine."""
        config.load(write_config(
            '[receivers.hook]\ntype = "webhook"\nurl = "https://hooks.example/x"\n'
            '[receivers.am]\ntype = "alertmanager"\nurls = ["http://127.0.0.1:9093"]\n'
        ))  # fmt: skip


TOKEN = '[[http.tokens]]\nname = "ops"\nscope = "write"\nsecret = {{ {ref} }}\n'


class TestSecrets:
    """Secrets are checked where they are (never their values)."""

    def _checks(self, write_config: WriteConfig, ref: str) -> tuple[list[str], list[str]]:
        return checks(config.load(write_config(TOKEN.format(ref=ref))))

    def test_empty_token_file_is_an_error(self, write_config: WriteConfig, tmp_path: Path) -> None:
        """An empty (or blank) token secret would let anyone in: error."""
        (tmp_path / "token").write_text(" \n", encoding="utf-8")
        errors, _ = self._checks(write_config, 'file = "token"')
        assert errors == [f"http.tokens.0.secret: secret file {tmp_path / 'token'} is empty"]

    def test_empty_token_variable_is_an_error(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An empty environment variable: error."""
        monkeypatch.setenv("MW_TOKEN", "")
        errors, _ = self._checks(write_config, 'env = "MW_TOKEN"')
        assert errors == ["http.tokens.0.secret: environment variable MW_TOKEN is empty"]

    def test_unset_variable_is_a_warning(self, write_config: WriteConfig) -> None:
        """Unset here (the service may have it): a warning."""
        errors, warnings = self._checks(write_config, 'env = "MW_NOT_SET_ANYWHERE"')
        assert errors == []
        assert "http.tokens.0.secret: environment variable MW_NOT_SET_ANYWHERE is not set here" \
            in warnings  # fmt: skip

    def test_missing_file_is_an_error(self, write_config: WriteConfig, tmp_path: Path) -> None:
        """A secret file that does not exist: error."""
        errors, _ = self._checks(write_config, 'file = "nope"')
        assert errors == [f"http.tokens.0.secret: secret file {tmp_path / 'nope'} does not exist"]

    def test_world_readable_file_is_a_warning(
        self, write_config: WriteConfig, tmp_path: Path
    ) -> None:
        """Anyone on the host can read it: warning; chmod 600 silences it."""
        secret = tmp_path / "token"
        secret.write_text("s3cret\n", encoding="utf-8")
        secret.chmod(0o644)
        errors, warnings = self._checks(write_config, 'file = "token"')
        assert errors == []
        assert any("is readable by everyone" in w for w in warnings)
        secret.chmod(0o600)
        assert self._checks(write_config, 'file = "token"') == ([], [])

    def test_receiver_and_source_secrets_are_checked(
        self, write_config: WriteConfig, tmp_path: Path
    ) -> None:
        """Every secret reference is found, with its key path."""
        (tmp_path / "empty").write_text("", encoding="utf-8")
        errors, _ = checks(config.load(write_config(
            '[receivers.hook]\ntype = "webhook"\nurl = "https://h.example/"\n'
            'hmac_secret = { file = "empty" }\n'
            '[sources.box]\ntype = "imap"\nhost = "imap.example"\nuser = "u"\n'
            'password = { file = "empty" }\n'
        )))  # fmt: skip
        assert sorted(e.split(":")[0] for e in errors) == [
            "receivers.hook.hmac_secret", "sources.box.password"]  # fmt: skip

    def test_config_check_exits_2_on_errors(
        self, write_config: WriteConfig, tmp_path: Path
    ) -> None:
        """`config check` prints the error with its key path and exits 2."""
        (tmp_path / "token").write_text("", encoding="utf-8")
        path = write_config(TOKEN.format(ref='file = "token"'))
        result = CliRunner().invoke(cli, ["config", "check", str(path)])
        assert result.exit_code == 2
        assert "http.tokens.0.secret: secret file" in result.stderr
        assert "OK" not in result.stdout


class TestListener:
    """Listening on every interface without TLS and tokens is worth a warning."""

    @pytest.mark.parametrize("listen", ["0.0.0.0:9745", "[::]:9745"])
    def test_all_interfaces(self, write_config: WriteConfig, listen: str) -> None:
        """Without TLS and tokens: one warning naming both."""
        _, warnings = checks(config.load(write_config(f'[http]\nlisten = "{listen}"\n')))
        assert [w for w in warnings if w.startswith("http.listen: ")] == [
            f"http.listen: {listen} serves every network interface without TLS or API tokens;"
            " listen on 127.0.0.1 or configure them"
        ]

    def test_loopback_is_quiet(self, write_config: WriteConfig) -> None:
        """The default (loopback) raises nothing."""
        assert checks(config.load(write_config(""))) == ([], [])


class TestCalendar:
    """The [calendar] section: time zone and holidays, validated."""

    def test_defaults_are_england_and_wales(self, write_config: WriteConfig) -> None:
        """Europe/London with the England and Wales bank holidays."""
        settings = config.load(write_config(""))
        calendar = settings.calendar.calendar(date(2026, 6, 1))
        assert str(calendar.zone) == "Europe/London"
        assert date(2026, 8, 31) in calendar.holidays  # Summer bank holiday (England)
        assert date(2026, 8, 3) not in calendar.holidays  # Scotland's summer holiday

    def test_overrides(self, write_config: WriteConfig) -> None:
        """Another subdivision, extra days off, and a holiday worked after all."""
        settings = config.load(write_config(
            '[calendar]\ntime_zone = "Europe/London"\nsubdivision = "SCT"\n'
            'extra_holidays = [2026-12-24]\nworking_days = ["2026-12-28"]\n'
        ))  # fmt: skip
        holidays = settings.calendar.calendar(date(2026, 6, 1)).holidays
        assert date(2026, 8, 3) in holidays
        assert date(2026, 12, 24) in holidays
        assert date(2026, 12, 28) not in holidays

    def test_no_holidays(self, write_config: WriteConfig) -> None:
        """An empty country keeps weekends only."""
        settings = config.load(write_config('[calendar]\ncountry = ""\n'))
        assert settings.calendar.calendar(date(2026, 6, 1)).holidays == frozenset()

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('time_zone = "Europe/Londn"', "calendar.time_zone: 'Europe/Londn' is not a known"),
            ('subdivision = "XYZ"', "calendar: country/subdivision: "),
            ('country = "QQ"', "calendar: country/subdivision: "),
            ('extra_holidays = ["someday"]', "calendar.extra_holidays.0: "),
        ],
    )
    def test_refused(self, write_config: WriteConfig, text: str, expected: str) -> None:
        """Unknown zones, countries, subdivisions and non-dates are refused by key path."""
        found = problems(write_config(f"[calendar]\n{text}\n"))
        assert any(p.startswith(expected) for p in found), found
