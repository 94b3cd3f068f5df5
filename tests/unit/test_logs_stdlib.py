"""Libraries' standard-library logging comes out as mailwatch's own log lines do.

aiohttp and aioimaplib log through :mod:`logging`; ``mailwatch.logs.configure`` routes those
records through structlog's ``ProcessorFormatter`` with the same tail as structlog's own events
(structured tracebacks, the redaction processor, the JSON renderer). Here a real aiohttp server
fails a request (its ``aiohttp.server`` error record, with a traceback) and aioimaplib's logger
warns; each line must be one JSON object with the keys of a mailwatch event, addresses masked
and an unexpected exception's text dropped.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from mailwatch.logs import configure

ADDRESS = "jane.doe@justice.example"
MASKED = "***@justice.example"
EVENT_KEYS = {"event", "level", "timestamp"}


@pytest.fixture(name="captured")
def fixture_captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The production chain (JSON, info level) writing to a buffer instead of stderr."""
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    configure("info", "json", cache=False)
    yield buffer
    configure("debug", "json", cache=False)


def lines(captured: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]


def assert_same_shape(line: dict[str, Any], own: dict[str, Any]) -> None:
    """``line`` has the keys and value formats of mailwatch's own event ``own``."""
    assert set(line) >= EVENT_KEYS
    assert set(own) >= EVENT_KEYS
    assert line["level"] in {"debug", "info", "warning", "error", "critical"}
    assert line["timestamp"].endswith("Z")
    assert len(line["timestamp"]) == len(own["timestamp"])


async def test_aiohttp_error_record_is_json_and_redacted(captured: io.StringIO) -> None:
    """A handler failing in a real aiohttp server logs one redacted JSON line, traceback too."""

    async def fail(_request: web.Request) -> web.Response:
        raise ValueError(f"could not route mail for {ADDRESS}")

    app = web.Application()
    app.router.add_get("/fail", fail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/fail?to={ADDRESS}") as response,
        ):
            assert response.status == 500
    finally:
        await runner.cleanup()
    structlog.get_logger("mailwatch").info("probe_done", source="mta1")
    *library, own = lines(captured)
    (error,) = [line for line in library if line.get("logger") == "aiohttp.server"]
    assert_same_shape(error, own)
    assert error["level"] == "error"
    assert error["event"].startswith("Error handling request")
    (stack,) = error["exception"]
    assert stack["exc_type"] == "ValueError"
    assert stack["exc_value"] == "[redacted]"  # an unexpected exception may quote mail data
    assert ADDRESS not in captured.getvalue()
    assert "jane.doe" not in captured.getvalue()


def test_aioimaplib_warning_is_json_and_masked(captured: io.StringIO) -> None:
    """The aioimaplib logger (``aioimaplib.aioimaplib``) warns: one JSON line, address masked."""
    imap_log = logging.getLogger("aioimaplib.aioimaplib")
    imap_log.debug("Sending : b'AUTHENTICATE XOAUTH2 dXNlcj1qYW5lAWF1dGg9QmVhcmVyIHNlY3JldA=='")
    imap_log.warning("unexpected response for %s", ADDRESS)
    structlog.get_logger("mailwatch").warning("imap_reconnect", source="inbox")
    warning, own = lines(captured)  # the DEBUG record (a SASL token) never reaches the log
    assert_same_shape(warning, own)
    assert warning["logger"] == "aioimaplib.aioimaplib"
    assert warning["level"] == "warning"
    assert warning["event"] == f"unexpected response for {MASKED}"
    assert "XOAUTH2" not in captured.getvalue()
