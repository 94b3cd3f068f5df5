"""What the on-call read commands need of the configuration, read without pydantic.

``mailwatch stuck`` and ``check`` answer on a terminal and for Nagios in well under half a
second at 100,000 stuck. Validating the whole configuration (pydantic, every source, receiver,
class and rule model) is ~0.15 s of that budget before the store is even opened, and the
commands use four keys: ``store.path``, ``undeliverable_for``, ``log.level`` and ``log.format``.

:func:`load_essentials` reads the same file (``tomllib``), with the same environment overrides
(``MAILWATCH_STORE__PATH``, ``MAILWATCH_UNDELIVERABLE_FOR``, ``MAILWATCH_LOG__LEVEL``...), and
validates, with the same rules and the same ``key.path: reason`` messages as
:func:`mailwatch.config.settings.load`: the keys those commands use, the ``[store]`` and
``[log]`` tables whole (unknown keys included), and the top level's key names (a misspelt
section is reported). It does not validate sources, receivers, classes or alert rules, which
these commands do not use: ``mailwatch config check`` and the service do. When the environment
overrides a whole section (``MAILWATCH_STORE='{...}'``) or gives a duration that is not JSON,
it returns ``None`` and the caller uses the full load (which words that error).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwatch.core.durations import Duration, duration_of, format_seconds
from mailwatch.errors import ConfigError

__all__ = ["TOP_LEVEL_KEYS", "Essentials", "load_essentials", "read_file"]

TOP_LEVEL_KEYS = frozenset({
    "store", "log", "http", "default_class", "include_default_classes", "classes", "sources",
    "undeliverable_for", "calendar", "status", "metrics", "receivers", "alerts", "fleet",
})  # fmt: skip
"""The fields of :class:`mailwatch.config.settings.Settings` (a unit test keeps them equal)."""
STORE_KEYS = frozenset({"path", "retention", "audit_retention"})
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
DAY = 86400.0
_WHOLE_SECTIONS = ("MAILWATCH_STORE", "MAILWATCH_LOG")


@dataclass(frozen=True, slots=True)
class Essentials:
    """The keys the read commands use, validated."""

    store_path: Path
    undeliverable_for: float
    """Seconds a bounced or expired P1/P2 message stays listed as stuck."""
    log_level: str = "info"
    log_format: str = "auto"


def read_file(path: Path) -> dict[str, Any]:
    """The parsed TOML file, or a :class:`ConfigError` saying why not (``load`` reads it so too)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None


_duration = duration_of


def _window(value: object) -> float:
    """``WindowField``: clock time, 0 to 366 days."""
    duration = _duration(value)
    if duration.business_days:
        raise ValueError(f"{duration}: use clock time here (e.g. 30s, 10m), not business days")
    if duration.seconds > 366 * DAY:
        raise ValueError(f"{duration} is too long (at most {format_seconds(366 * DAY)})")
    return duration.seconds


_JSON_VARIABLES = ("undeliverable_for", "store__retention", "store__audit_retention")
"""Overrides that pydantic-settings reads as JSON (a duration is ``'"2h"'`` or ``7200``)."""


def _env(prefix: str = "MAILWATCH_") -> dict[str, Any] | None:
    """``MAILWATCH_*`` variables by lower-case name, prefix removed (case-insensitive).

    JSON ones are decoded; ``None`` if one is not valid JSON (the full load words that error).
    """
    found: dict[str, Any] = {k[len(prefix) :].lower(): v for k, v in os.environ.items()
                             if k.upper().startswith(prefix)}  # fmt: skip
    for name in _JSON_VARIABLES:
        if name in found:
            try:
                found[name] = json.loads(found[name])
            except ValueError:
                return None
    return found


def _table(data: dict[str, Any], key: str, model: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: Input should be a valid dictionary or instance of {model}")
        return {}
    return value


def _checked(data: dict[str, Any], env: dict[str, Any], problems: list[str]) -> Essentials:
    problems.extend(f"{k}: unknown key" for k in data if k not in TOP_LEVEL_KEYS)
    store = _table(data, "store", "StoreConfig", problems)
    log = _table(data, "log", "LogConfig", problems)
    problems.extend(f"store.{k}: unknown key" for k in store if k not in STORE_KEYS)
    problems.extend(f"log.{k}: unknown key" for k in log if k not in ("level", "format"))
    overridable = [("store", k) for k in sorted(STORE_KEYS)] + [("log", "level"), ("log", "format")]
    for section, key in overridable:
        if f"{section}__{key}" in env:
            (store if section == "store" else log)[key] = env[f"{section}__{key}"]
    path = store.get("path", "mailwatch.db")
    if not isinstance(path, str):
        problems.append("store.path: Input is not a valid path for <class 'pathlib.Path'>")
    retention = _retention(store, problems)
    try:
        seconds = _window(env.get("undeliverable_for", data.get("undeliverable_for", "1d")))
    except ValueError as exc:
        problems.append(f"undeliverable_for: {exc}")
        seconds = DAY
    level, form = log.get("level", "info"), log.get("format", "auto")
    if level not in LOG_LEVELS:
        problems.append(f"log.level: Input should be {_choices(LOG_LEVELS)}")
    if form not in LOG_FORMATS:
        problems.append(f"log.format: Input should be {_choices(LOG_FORMATS)}")
    if not problems and retention < seconds:
        problems.append(
            "(top level): store.retention: shorter than undeliverable_for, so bounced mail"
            " would be deleted while it is still listed as stuck"
        )
    return Essentials(Path(str(path)), seconds, str(level), str(form))


def _retention(store: dict[str, Any], problems: list[str]) -> float:
    """``store.retention`` in seconds (``StoreConfig``'s rules for it and ``audit_retention``)."""
    kept = 30 * DAY
    for key, default in (("retention", 30 * DAY), ("audit_retention", 400 * DAY)):
        try:
            duration = _duration(store[key]) if key in store else Duration(default)
        except ValueError as exc:
            problems.append(f"store.{key}: {exc}")
            continue
        if duration.business_days or duration.seconds < DAY:
            problems.append(f"store: {key}: keep at least one day (a clock duration such as 30d)")
        if key == "retention":
            kept = duration.seconds
    return kept


def _choices(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def load_essentials(path: Path | None) -> Essentials | None:
    """The read commands' keys of ``path`` (``None``: defaults and environment only).

    Raises :class:`ConfigError` naming each bad key; ``None`` when the environment overrides
    a whole section this cannot read (use :func:`mailwatch.config.settings.load`).
    """
    if any(k.upper() in _WHOLE_SECTIONS for k in os.environ):
        return None
    data: dict[str, Any] = {}
    if path is not None:
        data = read_file(path)
        store = data.get("store")
        if isinstance(store, dict) and isinstance(store.get("path"), str):
            store["path"] = str(path.parent / store["path"])
    env = _env()
    if env is None:
        return None
    problems: list[str] = []
    essentials = _checked(data, env, problems)
    if problems:
        raise ConfigError(problems)
    return essentials
