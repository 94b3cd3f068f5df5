"""Canary pieces without a network: tokens, queue ids, the arrival estimate, configuration."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailwatch.config import settings as config
from mailwatch.config.sources import CanarySourceConfig
from mailwatch.core.model import CanaryResult, Headers, Message, Recipient
from mailwatch.errors import ConfigError
from mailwatch.parsing.canary import (
    CANARY_HEADER,
    canary_subject,
    new_token,
    parse_queue_id,
    token_of,
)
from mailwatch.sources.canary import CanarySource, Destination, Submission, estimate_arrival
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store

T0 = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
WriteConfig = Callable[[str], Path]


def _source(**overrides: Any) -> CanarySource:
    settings: dict[str, Any] = {
        "submission": Submission("127.0.0.1", 2525, security="none"),
        "destination": Destination("127.0.0.1", "duty", password="secret"),
        "sender": "mailwatch@probation.example",
        "recipient": "duty@canary.example",
    }
    settings.update(overrides)
    return CanarySource("mta1_to_duty", **settings)


class TestQueueId:
    """The queue id in the submission server's reply to DATA."""

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            ("2.0.0 Ok: queued as 4XyZ12AB", "4XyZ12AB"),
            ("2.0.0 Ok: queued as E1311214192", "E1311214192"),
            ("2.0.0 Ok: queued as 4T6Jbp0ZQkz9sWF", "4T6Jbp0ZQkz9sWF"),  # long queue id
            ("Ok: Queued As ABC123 (with text after)", "ABC123"),
            ("OK id=1tAbCd-000Abc-12", "1tAbCd-000Abc-12"),  # Exim
            ("OK id=1tAbCd-0000000000Ab-12XY", "1tAbCd-0000000000Ab-12XY"),  # Exim 4.97
            ("2.0.0 OK 1717171717 abc.123 - gsmtp", None),
            ("Message accepted for delivery", None),
            ("", None),
        ],
    )
    def test_parse(self, reply: str, expected: str | None) -> None:
        """Postfix and Exim ids are found; other servers' replies give none."""
        assert parse_queue_id(reply) == expected


class TestToken:
    """Tokens name their path, are unguessable, and are matched exactly."""

    def test_fresh_tokens_name_their_path(self) -> None:
        """PATH.16 hex digits, never twice the same."""
        tokens = {new_token("mta1_to_duty") for _ in range(100)}
        assert len(tokens) == 100
        assert all(t.startswith("mta1_to_duty.") and len(t) == 13 + 16 for t in tokens)

    def test_subject_carries_the_token(self) -> None:
        """The subject is ``mailwatch canary TOKEN``."""
        assert canary_subject("p.0123456789abcdef") == "mailwatch canary p.0123456789abcdef"

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("duty.0123456789abcdef", "duty.0123456789abcdef"),
            ("  duty.0123456789abcdef \r\n", "duty.0123456789abcdef"),
            ("other.0123456789abcdef", None),  # another path's canary
            ("xduty.0123456789abcdef", None),  # a path whose name ends with ours
            ("duty.0123456789ABCDEF", None),
            ("duty.0123456789abcdef0", None),
            ("duty.typed-by-hand", None),
            ("duty.0123456789abcdef extra", None),
            ("", None),
            (None, None),
        ],
    )
    def test_only_exact_tokens_of_the_path_are_ours(
        self, value: str | None, expected: str | None
    ) -> None:
        """Only a header that is exactly one of the path's tokens is taken for ours."""
        assert token_of(value, "duty") == expected

    @pytest.mark.parametrize("path", ["", "a b", 'a"b', "a\r\nb", "x" * 65])
    def test_unusable_path_names_are_refused(self, path: str) -> None:
        """A path name must be safe in a token and in an IMAP search string."""
        with pytest.raises(ValueError, match="cannot name a canary path"):
            new_token(path)


class TestArrival:
    """INTERNALDATE (whole seconds, the server's clock) narrowed by our own clock."""

    def test_sub_second_trip_lands_between_send_and_find(self) -> None:
        """Sent at .700, found at .950, INTERNALDATE :00: the middle of [.700, .950]."""
        sent, found = T0 + timedelta(seconds=0.7), T0 + timedelta(seconds=0.95)
        arrival = estimate_arrival(T0, sent, found)
        assert arrival == T0 + timedelta(seconds=0.825)
        assert sent < arrival < found

    def test_late_look_keeps_the_internaldate_second(self) -> None:
        """Found 5 minutes later: the arrival is INTERNALDATE + 0.5 s, not the probe time."""
        sent = T0 - timedelta(seconds=3.2)
        arrival = estimate_arrival(T0, sent, T0 + timedelta(minutes=5))
        assert arrival == T0 + timedelta(seconds=0.5)

    def test_no_internaldate_means_the_probe_time(self) -> None:
        """Without INTERNALDATE only our own clock is left: the time it was found."""
        found = T0 + timedelta(seconds=7)
        assert estimate_arrival(None, T0, found) == found

    def test_skewed_server_clock_is_clamped(self) -> None:
        """A server clock far behind or ahead cannot put the arrival outside [sent, found]."""
        sent, found = T0, T0 + timedelta(seconds=10)
        assert estimate_arrival(T0 - timedelta(minutes=3), sent, found) == sent
        assert estimate_arrival(T0 + timedelta(minutes=3), sent, found) == found


class TestSourceSettings:
    """What the canary source refuses before anything is sent."""

    def test_plaintext_submission_off_loopback_is_refused(self) -> None:
        """Plaintext submission (security none) only to a loopback server."""
        with pytest.raises(ValueError, match="only allowed on loopback"):
            _source(submission=Submission("smtp.probation.example", 25, security="none"))

    def test_plaintext_imap_off_loopback_is_refused(self) -> None:
        """IMAP plain only to a loopback server."""
        dest = Destination("imap.probation.example", "duty", password="x", security="plain")
        with pytest.raises(ValueError, match="only allowed on loopback"):
            _source(destination=dest)

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"destination": Destination("127.0.0.1", "duty")}, "exactly one of"),
            ({"submission": Submission("127.0.0.1", username="u")}, "go together"),
            ({"recipient": "duty@x\r\nBcc: y@z"}, "plain addresses"),
            ({"timeout": 0}, "positive"),
        ],
    )
    def test_bad_settings(self, overrides: dict[str, Any], message: str) -> None:
        """Credentials in pairs, header-safe addresses, a positive timeout."""
        with pytest.raises(ValueError, match=message):
            _source(**overrides)

    def test_repr_shows_no_secret(self) -> None:
        """Neither password appears in the source's repr."""
        source = _source(
            submission=Submission("127.0.0.1", username="u", password="smtp-pw", security="none")
        )
        assert "smtp-pw" not in repr(source)
        assert "secret" not in repr(source)
        assert "smtp-pw" not in repr(source.submission)

    async def test_resumed_canaries_are_the_backlog(self) -> None:
        """Canaries in flight from the store are messages of queue canary:PATH; lost ones not."""
        travelling = CanaryResult("mta1_to_duty", "mta1_to_duty.0123456789abcdef", T0, "ABC123")
        lost = CanaryResult("mta1_to_duty", "mta1_to_duty.fedcba9876543210", T0, None, lost=True)
        source = _source(in_flight=[travelling, lost])
        (message,) = [source._message(c) for c in source._in_flight.values() if not c.lost]
        assert message == Message(
            key="mta1_to_duty/mta1_to_duty.0123456789abcdef", source="mta1_to_duty",
            queue_id="ABC123", queue="canary:mta1_to_duty", arrival=T0, size=0,
            sender="mailwatch@probation.example",
            recipients=(Recipient("duty@canary.example"),),
            headers=Headers(((CANARY_HEADER, "mta1_to_duty.0123456789abcdef"),)),
            subject="mailwatch canary mta1_to_duty.0123456789abcdef",
            wait_reason="canary not delivered",
        )  # fmt: skip

    def test_canary_class_matches_the_header(self) -> None:
        """The shipped canary class (P1) catches any message with the canary header."""
        source = _source(in_flight=[CanaryResult("mta1_to_duty", "mta1_to_duty.0a", T0, None)])
        message = source._message(next(iter(source._in_flight.values())))
        found = config.load(None).classifier().classify(message)
        assert (found.name, str(found.priority)) == ("canary", "P1")


@pytest.fixture(name="write_config")
def fixture_write_config(tmp_path: Path) -> WriteConfig:
    """Write a mailwatch.toml and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "mailwatch.toml"
        path.write_text(text)
        return path

    return write


class TestConfig:
    """``type = "canary"`` tables: defaults, secrets by reference, loopback-only plaintext."""

    BASE = (
        '[sources.mta1_to_duty]\ntype = "canary"\nsubmission_host = "smtp.probation.example"\n'
        'sender = "mailwatch@probation.example"\nrecipient = "duty@probation.example"\n'
        'imap_host = "imap.probation.example"\nimap_user = "duty"\n'
    )

    def test_defaults(self, write_config: WriteConfig) -> None:
        """STARTTLS both ways, verified; every 5m, lost after 10m; INBOX; canaries deleted."""
        path = write_config(self.BASE + 'imap_password = { env = "DUTY_PW" }\n')
        source = config.load(path).sources["mta1_to_duty"]
        assert isinstance(source, CanarySourceConfig)
        assert (source.submission_security, source.imap_security) == ("starttls", "starttls")
        assert (source.interval.seconds, source.timeout.seconds) == (300, 600)
        assert (source.folder, source.keep, source.verify) == ("INBOX", False, True)

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            ("", "exactly one of imap_password or imap_token"),
            ('imap_password = { env = "A" }\nsubmission_security = "none"\n', "loopback"),
            ('imap_password = { env = "A" }\nimap_security = "plain"\n', "loopback"),
            ('imap_password = { env = "A" }\nsubmission_username = "u"\n', "go together"),
            ('imap_password = { env = "A" }\ntimeout = "1 business day"\n', "clock time"),
            ('imap_password = { env = "A" }\nrecipient = "Duty <d@x>"\n', "plain address"),
            ('imap_password = "inline-secret"\n', "sources.mta1_to_duty.imap_password"),
        ],
    )
    def test_bad_settings_are_named(
        self, write_config: WriteConfig, extra: str, message: str
    ) -> None:
        """Each mistake names the source's key path (without the type tag) and a reason."""
        base = self.BASE.replace('recipient = "duty@probation.example"\n', "")
        if "recipient" not in extra:
            base += 'recipient = "duty@probation.example"\n'
        with pytest.raises(ConfigError) as raised:
            config.load(write_config(base + extra))
        text = "\n".join(raised.value.problems)
        assert message in text
        assert "sources.mta1_to_duty" in text
        assert ".canary." not in text
        assert "inline-secret" not in text

    def test_factory_reads_secrets_and_resumes_in_flight(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The factory reads the secrets and hands the source the store's canaries in flight."""
        monkeypatch.setenv("DUTY_PW", "imap-secret")
        settings = config.load(write_config(self.BASE + 'imap_password = { env = "DUTY_PW" }\n'))
        with Store(tmp_path / "db.sqlite") as store:
            sent = CanaryResult("mta1_to_duty", "mta1_to_duty.0123456789abcdef", T0, "Q1")
            store.record_canaries("mta1_to_duty", [sent], T0)
            (source,) = build_sources(settings, store, clock=lambda: T0 + timedelta(minutes=1))
        assert isinstance(source, CanarySource)
        assert source.destination.password == "imap-secret"
        assert list(source._in_flight) == [sent.token]

    def test_factory_names_a_missing_secret(
        self, write_config: WriteConfig, tmp_path: Path
    ) -> None:
        """An unset secret variable is a ConfigError naming the source, not the value."""
        settings = config.load(write_config(self.BASE + 'imap_token = { env = "NO_SUCH_VAR" }\n'))
        with Store(tmp_path / "db.sqlite") as store, pytest.raises(ConfigError) as raised:
            build_sources(settings, store)
        assert raised.value.problems == [
            "sources.mta1_to_duty: environment variable NO_SUCH_VAR is not set"
        ]
