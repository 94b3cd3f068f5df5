"""The redaction processor: no subjects at info and above, addresses masked everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.model import Observation
from mailwatch.core.redaction import mask_addresses
from mailwatch.errors import SourceUnavailable
from mailwatch.logs import configure, redact
from mailwatch.store import Store


@pytest.fixture(name="captured")
def fixture_captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The real production chain (JSON, redaction) writing to a buffer instead of stderr."""
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    configure("debug", "json", cache=False)
    yield buffer
    configure("debug", "json", cache=False)


class TestRedaction:
    """What reaches the log line."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("to=<j.smith@justice.example>", "to=<***@justice.example>"),
            ("a@b.example, c.d+e@x.y.example", "***@b.example, ***@x.y.example"),
            ("no address here", "no address here"),
        ],
    )
    def test_mask_addresses(self, text: str, expected: str) -> None:
        """Local parts go; domains stay (they help diagnose routing)."""
        assert mask_addresses(text) == expected

    def test_subject_dropped_at_info(self, captured: io.StringIO) -> None:
        """At info a subject is replaced, a nested address masked, other fields kept."""
        structlog.get_logger("t").info(
            "stuck", subject="Emergency recall J Smith", queue_id="ABC123",
            reason="host said: 550 <j.smith@justice.example> unknown",
        )  # fmt: skip
        line = json.loads(captured.getvalue().splitlines()[-1])
        assert line["subject"] == "[redacted]"
        assert line["queue_id"] == "ABC123"
        assert "j.smith" not in captured.getvalue()
        assert "***@justice.example" in line["reason"]

    def test_subject_kept_at_debug_but_addresses_masked(self, captured: io.StringIO) -> None:
        """Debug keeps the subject for troubleshooting, still without addresses."""
        structlog.get_logger("t").debug("classified", subject="MAPPA level 3", sender="a@b.example")
        line = json.loads(captured.getvalue().splitlines()[-1])
        assert line["subject"] == "MAPPA level 3"
        assert line["sender"] == "[redacted]"

    @pytest.mark.parametrize("key", ["headers", "body", "recipients", "recipient", "sender"])
    def test_sensitive_keys_always_dropped(self, key: str) -> None:
        """Keys that hold message content are dropped whatever the level."""
        event = redact(None, "warning", {key: "x@y.example", "event": "e"})
        assert event[key] == "[redacted]"


class _FakeFailingSource:
    """Fault injection: a source whose probe always fails."""

    name = "mta9"

    async def probe(self) -> Observation:
        """Fail like an unreachable MTA would."""
        raise SourceUnavailable(self.name, "cannot run postqueue: No such file or directory")


async def test_scan_logs_carry_source_and_scan_id(captured: io.StringIO, tmp_path: Path) -> None:
    """Log lines emitted during a scan carry the source and a per-scan id (contextvars)."""
    with Store(tmp_path / "mw.db") as store:
        scanner = Scanner(load(None).classifier(), store)
        await scanner.scan(_FakeFailingSource())
        await scanner.scan(_FakeFailingSource())
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    failures = [line for line in lines if line["event"] == "probe_failed"]
    assert [(f["source"], f["scan"]) for f in failures] == [("mta9", 1), ("mta9", 2)]
    structlog.get_logger("t").info("after")
    assert "scan" not in json.loads(captured.getvalue().splitlines()[-1])  # unbound again


SUBJECT = "Emergency recall - Jane Doe, 4 Elm Road"
ADDRESS = "jane.doe@justice.example"


def _fail_with_personal_data() -> None:
    subject, recipient = SUBJECT, ADDRESS  # locals a traceback with locals would print
    raise ValueError(f"cannot classify {subject!r} for {recipient}")


class TestExceptions:
    """Error-level logs with a traceback, on the real production chain."""

    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_no_locals_no_message_text(self, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Neither the subject nor the address (in locals and in the message) reaches the log."""
        buffer = io.StringIO()
        monkeypatch.setattr("sys.stderr", buffer)
        configure("info", fmt, cache=False)
        try:
            _fail_with_personal_data()
        except ValueError:
            structlog.get_logger("t").exception("classify_failed")
        text = buffer.getvalue()
        assert "classify_failed" in text
        assert "ValueError" in text
        assert "_fail_with_personal_data" in text  # the frames are still there
        for secret in ("Jane Doe", "jane.doe", "Elm Road"):
            assert secret not in text

    def test_own_errors_keep_their_message_masked(self, captured: io.StringIO) -> None:
        """Mailwatch's own errors keep their message (they say what failed), addresses masked."""
        try:
            raise SourceUnavailable("mta1", f"relay refused {ADDRESS}")
        except SourceUnavailable:
            structlog.get_logger("t").error("probe_failed", exc_info=True)
        line = json.loads(captured.getvalue().splitlines()[-1])
        (stack,) = line["exception"]
        assert "relay refused ***@justice.example" in stack["exc_value"]
        assert all("locals" not in frame for frame in stack["frames"])

    def test_chained_cause_redacted(self, captured: io.StringIO) -> None:
        """An unexpected cause under one of mailwatch's errors is redacted too."""
        try:
            try:
                _fail_with_personal_data()
            except ValueError as exc:
                raise SourceUnavailable("mta1", "classification failed") from exc
        except SourceUnavailable:
            structlog.get_logger("t").exception("probe_failed")
        assert "Jane Doe" not in captured.getvalue()
        assert "classification failed" in captured.getvalue()

    def test_stdlib_logging_goes_through_redaction(self, captured: io.StringIO) -> None:
        """aiohttp/asyncio records (stdlib logging) get the same treatment."""
        try:
            _fail_with_personal_data()
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling %s", ADDRESS)
        line = json.loads(captured.getvalue().splitlines()[-1])
        assert line["logger"] == "aiohttp.server"
        assert line["event"] == "Error handling ***@justice.example"
        assert "Jane Doe" not in captured.getvalue()
        assert "jane.doe" not in captured.getvalue()
