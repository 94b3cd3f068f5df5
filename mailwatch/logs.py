"""Logging: structlog configured once, with a redaction processor in front of the renderer.

Personal data must not reach logs at info level or above: subjects (and other free text taken
from messages) are dropped, and anything that looks like an email address is masked to its
domain (``***@justice.example``). At debug level subjects are kept, addresses still masked.

Exceptions are turned into structured tracebacks *before* redaction, without frame locals
(``show_locals=False``: a local variable may hold a subject or an address). The redaction then
covers them too: addresses in exception messages are masked, and at info and above the message
of an exception that is not one of mailwatch's own errors (or an OS, timeout or SQLite error)
is dropped, since an unexpected exception may quote the data it failed on. The standard
library's logging (aiohttp, asyncio) goes through the same chain (structlog's
``ProcessorFormatter``), so its records are redacted as well.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from mailwatch.core.redaction import mask_addresses
from mailwatch.errors import MailwatchError

SENSITIVE_KEYS = frozenset({"subject", "headers", "body", "sender", "recipient", "recipients"})
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_addresses(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


_TRUSTED = (MailwatchError, OSError, TimeoutError, sqlite3.Error)
"""Exceptions whose messages mailwatch or the OS wrote (addresses still masked)."""
_TRUSTED_MARK = "_mailwatch_trusted"


def _chain(exc: BaseException | None, seen: set[int]) -> list[BaseException]:
    if exc is None or id(exc) in seen:
        return []
    seen.add(id(exc))
    found = [exc, *_chain(exc.__cause__, seen), *_chain(exc.__context__, seen)]
    for member in getattr(exc, "exceptions", ()):
        if isinstance(member, BaseException):
            found += _chain(member, seen)
    return found


class SafeTracebacks:
    """Structured tracebacks without frame locals, each stack marked trusted or not."""

    def __init__(self) -> None:
        self._dicts = ExceptionDictTransformer(show_locals=False)

    def __call__(self, exc_info: Any) -> list[dict[str, Any]]:
        """``exc_info`` as a list of stack dicts (see ``structlog.tracebacks``)."""
        stacks = self._dicts(exc_info)
        chain = _chain(exc_info[1], set())
        trusted = {type(e).__name__ for e in chain if isinstance(e, _TRUSTED)}
        untrusted = {type(e).__name__ for e in chain if not isinstance(e, _TRUSTED)}
        _mark(stacks, trusted - untrusted)
        return stacks


def _mark(stacks: list[dict[str, Any]], trusted: set[str]) -> None:
    for stack in stacks:
        stack[_TRUSTED_MARK] = stack.get("exc_type") in trusted
        for group in stack.get("exceptions") or ():
            _mark(group, trusted)


def _redact_stacks(stacks: list[dict[str, Any]], keep_text: bool) -> list[dict[str, Any]]:
    for stack in stacks:
        trusted = stack.pop(_TRUSTED_MARK, False)
        for frame in stack.get("frames") or ():
            frame.pop("locals", None)
        if keep_text or trusted:
            stack["exc_value"] = mask_addresses(str(stack.get("exc_value", "")))
            stack["exc_notes"] = [mask_addresses(str(n)) for n in stack.get("exc_notes") or ()]
        else:
            stack["exc_value"] = "[redacted]"
            stack["exc_notes"] = ["[redacted]" for _ in stack.get("exc_notes") or ()]
            if stack.get("syntax_error"):
                stack["syntax_error"] = "[redacted]"
        for group in stack.get("exceptions") or ():
            _redact_stacks(group, keep_text)
    return stacks


def redact(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop message text at info and above; mask addresses everywhere (tracebacks included)."""
    keep_text = method == "debug"
    for key in list(event):
        value = event[key]
        if key in SENSITIVE_KEYS and not (keep_text and key == "subject"):
            event[key] = "[redacted]"
        elif key == "exception" and isinstance(value, list):
            event[key] = _redact_stacks(value, keep_text)
        else:
            event[key] = _redact_value(value)
    return event


def exception_text(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For the console renderer: structured (redacted) tracebacks as plain text."""
    stacks = event.get("exception")
    if isinstance(stacks, list):
        event["exception"] = "\n".join(_stack_lines(stacks))
    return event


def _stack_lines(stacks: list[dict[str, Any]]) -> list[str]:
    lines = []
    for stack in reversed(stacks):  # the cause first, as Python prints it
        lines.append("Traceback (most recent call last):")
        for frame in stack.get("frames") or ():
            lines.append(
                f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}'
            )
        lines.append(f"{stack.get('exc_type')}: {stack.get('exc_value')}")
        lines += [f"  {note}" for note in stack.get("exc_notes") or ()]
        for group in stack.get("exceptions") or ():
            lines += ["  +-- " + line for line in _stack_lines(group)]
    return lines


TRACEBACKS = structlog.processors.ExceptionRenderer(SafeTracebacks())
"""Replaces ``exc_info`` with safe structured tracebacks (no frame locals)."""
_HANDLER_MARK = "_mailwatch_handler"


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
    tail: list[Any] = [TRACEBACKS, redact, *([exception_text] if use_console else []), renderer]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache,
    )
    _route_stdlib(_LEVELS[level], tail)
    # aioimaplib and friends log credentials and headers at DEBUG: never let them through.
    for noisy in ("aioimaplib", "aiosmtplib", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _route_stdlib(level: int, tail: list[Any]) -> None:
    """Send the standard library's log records (aiohttp, asyncio) through the same chain."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
