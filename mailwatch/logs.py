"""Logging: structlog configured once, with a redaction processor in front of the renderer.

Personal data must not reach logs at info level or above: subjects (and other free text taken
from messages) are dropped, and anything that looks like an email address is masked to its
domain (``***@justice.example``). At debug level subjects are kept, addresses still masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset({"subject", "headers", "body", "sender", "recipient", "recipients"})
_ADDRESS = re.compile(  # only from the start of a run of local-part characters: linear
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]++"
    r"@([A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+)"
)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def mask_addresses(text: str) -> str:
    """Replace the local part of every address-like token with ``***``."""
    return _ADDRESS.sub(r"***@\1", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_addresses(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def redact(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop message text at info and above; mask addresses everywhere."""
    keep_text = method == "debug"
    for key in list(event):
        if key in SENSITIVE_KEYS and not (keep_text and key == "subject"):
            event[key] = "[redacted]"
        else:
            event[key] = _redact_value(event[key])
    return event


_CACHING = {"allowed": True}
"""Global state, on purpose: once a test suite has asked for uncached loggers, a later
``configure()`` (a CLI command run in-process) must not switch caching back on, or loggers
bound then would ignore every later configuration (structlog #408)."""


def configure(level: str = "info", fmt: str = "auto", *, cache: bool = True) -> None:
    """Configure structlog for the process (``cache=False`` in tests, see structlog #408)."""
    if not cache:
        _CACHING["allowed"] = False
    cache = cache and _CACHING["allowed"]
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.dict_tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache,
    )
    # aioimaplib and friends log credentials and headers at DEBUG: never let them through.
    for noisy in ("aioimaplib", "aiosmtplib", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
