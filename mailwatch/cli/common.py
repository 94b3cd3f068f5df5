"""Shared by every command module: the context, option helpers, error handling, the API client.

Bad input gets a one-line error and exit code 2; a failure while working gets exit code 1;
never a traceback (``--debug`` shows it). Commands that only read open the store read-only and
refuse a missing one.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mailwatch.config import validated
from mailwatch.config.essentials import Essentials, load_essentials
from mailwatch.core.durations import format_seconds, parse_duration
from mailwatch.core.model import Priority
from mailwatch.errors import ConfigError, MailwatchError
from mailwatch.store.listing import StoreView

if TYPE_CHECKING:  # imported when used: a read command needs none of them (see cli/__init__)
    from mailwatch.cli.api_client import ApiClient
    from mailwatch.config.settings import Settings
    from mailwatch.store import Store

CONFIG_ENV = "MAILWATCH_CONFIG"


def utc_now() -> datetime:
    """The current time (UTC): every command's `now`."""
    return datetime.now(UTC)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``mailwatch: message`` on stderr and exit with ``code``."""
    click.echo(f"mailwatch: {message}", err=True)
    sys.exit(code)


def config_path(explicit: Path | None) -> Path | None:
    """The ``-c`` file, else ``./mailwatch.toml`` when present, else ``None`` (defaults)."""
    if explicit is not None:
        return explicit
    default = Path("mailwatch.toml")
    return default if default.is_file() else None


def _config_problems(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(f"mailwatch: config: {problem}", err=True)
    sys.exit(2)


class Context:
    """What every command needs: the configuration path, loaded lazily."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._settings: Settings | None = None
        self._essentials: Essentials | None = None

    @property
    def settings(self) -> Settings:
        """The validated configuration (exit 2 with every problem listed if invalid)."""
        if self._settings is None:
            from mailwatch.config.settings import load
            from mailwatch.logs import configure as configure_logging

            before = validated.fingerprint(self.path)
            try:
                self._settings = load(self.path)
            except ConfigError as exc:
                _config_problems(exc)
            if validated.fingerprint(self.path) == before:  # not edited while it was read
                validated.remember(before)
            configure_logging(self._settings.log.level, self._settings.log.format)
        return self._settings

    @property
    def essentials(self) -> Essentials:
        """The configuration keys the read commands use (:mod:`mailwatch.config.essentials`).

        Read without the model only when this very configuration passed the full validation
        before (:mod:`mailwatch.config.validated`); otherwise validated whole, every problem
        listed (exit 2), as every command does.
        """
        if self._essentials is None:
            if self._settings is None and validated.was_validated(validated.fingerprint(self.path)):
                try:
                    self._essentials = load_essentials(self.path)
                except ConfigError as exc:
                    _config_problems(exc)
            if self._essentials is None:  # not validated before, or the environment needs it
                s = self.settings
                self._essentials = Essentials(
                    s.store.path, s.undeliverable_for.seconds, s.log.level, s.log.format
                )
        return self._essentials

    @contextmanager
    def store(self, *, write: bool = False, create: bool = False) -> Iterator[Store]:
        """The configured store, closed afterwards.

        Read-only unless ``write``; a missing store is an error unless ``create``.
        """
        from mailwatch.store.db import Store

        path = self.settings.store.path
        with Store(path, create=create, readonly=not (write or create)) as store:
            yield store

    @contextmanager
    def view(self) -> Iterator[StoreView]:
        """The configured store, read-only and lightly (:class:`StoreView`), closed afterwards."""
        with StoreView(self.essentials.store_path) as view:
            yield view


pass_ctx = click.make_pass_decorator(Context)


if TYPE_CHECKING:  # click 8.5 made ParamType generic; older versions cannot subscript it
    _FloatParam = click.ParamType[float, Any]
else:
    _FloatParam = click.ParamType


class DurationParam(_FloatParam):
    """A clock duration option (``30m``, ``2h``) in seconds, at most ``most`` seconds."""

    name = "duration"

    def __init__(self, most: float = 366 * 86400.0) -> None:
        self.most = most

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds, or a one-line usage error."""
        if isinstance(value, float):
            return value
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if duration.business_days:
            self.fail(f"{value!r}: give clock time (e.g. 2h), not business days", param, ctx)
        if duration.seconds > self.most:
            self.fail(f"{value!r} is too long (at most {format_seconds(self.most)})", param, ctx)
        return duration.seconds


class FiniteFloat(_FloatParam):
    """A float option in ``(least, most]``: no NaN, no infinity."""

    name = "number"

    def __init__(self, least: float, most: float) -> None:
        self.least, self.most = least, most

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """The number, or a one-line usage error."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and self.least < number <= self.most):
            self.fail(f"{value!r} is not in ({self.least:g}, {self.most:g}]", param, ctx)
        return number


ROW_ID = click.IntRange(1, 2**63 - 1)
"""An id stored by SQLite (a positive 64-bit integer)."""


def duration_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> float | None:
    """Click callback: a ``--older-than``-style duration option in seconds."""
    if value is None:
        return None
    return DurationParam().convert(value, _param, _ctx)


def priority_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> Priority | None:
    """Click callback: a ``--priority`` option (P1…P4)."""
    if value is None:
        return None
    try:
        return Priority.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _debugging() -> bool:
    """Whether ``--debug`` was given (show tracebacks instead of one-line errors)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def guard(func: Callable[..., None]) -> Callable[..., None]:
    """Turn mailwatch's own errors into one line on stderr and exit code 1."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except MailwatchError as exc:
            if _debugging():
                raise
            fail(str(exc))

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


EXPECTED_ERRORS = (MailwatchError, OSError, ValueError, ArithmeticError, sqlite3.Error)
"""Errors a user can cause (bad input, a missing or damaged file, a port in use)."""


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"store: {exc} (check it: sqlite3 FILE 'PRAGMA integrity_check')"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        text = str(exc) if "[Errno" in str(exc) and not where else f"{exc.strerror}{where}"
        return text.replace("\n", " ")
    return (str(exc) or type(exc).__name__).replace("\n", "; ")


class MailwatchGroup(click.Group):
    """The top-level group: any error a command lets escape becomes one line and exit 2.

    ``--debug`` lets it through instead, with its traceback.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with usage mistakes reported on one line (exit 2)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "mailwatch"
            message = exc.format_message().replace("\n", " ")
            click.echo(f"mailwatch: error: {message} (see: {where} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn an escaping error into ``mailwatch: error: ...``."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _debugging():
                raise
            if isinstance(exc, EXPECTED_ERRORS):
                click.echo(f"mailwatch: error: {_one_line(exc)}", err=True)
            else:
                click.echo(f"mailwatch: internal error: {type(exc).__name__}: {_one_line(exc)}"
                           " (run with --debug for the traceback)", err=True)  # fmt: skip
            ctx.exit(2)


_CA_FILE = "mailwatch.ca_file"


def _remember_ca_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    ctx.meta[_CA_FILE] = value


def remote_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--server URL``, ``--token-file`` and ``--ca-file``: run against a mailwatch API."""
    func = click.option(
        "--ca-file", type=click.Path(path_type=Path, dir_okay=False), envvar="MAILWATCH_CA_FILE",
        expose_value=False, callback=_remember_ca_file, is_eager=True,
        help="Trust this CA (PEM) for an https --server, e.g. a private CA; the server's"
        " certificate is always verified (env MAILWATCH_CA_FILE; default: the system CAs).",
    )(func)  # fmt: skip
    func = click.option(
        "--token-file", type=click.Path(path_type=Path),
        help="File holding the API token (default: $MAILWATCH_TOKEN).",
    )(func)  # fmt: skip
    return click.option(
        "--server", envvar="MAILWATCH_SERVER",
        help="Query this mailwatch instead of the local store (env MAILWATCH_SERVER).",
    )(func)  # fmt: skip


def api_client(server: str | None, token_file: Path | None) -> ApiClient | None:
    """The API client for ``--server``, or ``None`` to use the local store."""
    if not server:
        return None
    token = os.environ.get("MAILWATCH_TOKEN")
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"--token-file: cannot read {token_file}: {exc.strerror}", 2)
    current = click.get_current_context(silent=True)
    ca_file = current.meta.get(_CA_FILE) if current is not None else None
    if ca_file is not None and not ca_file.is_file():
        fail(f"--ca-file: {ca_file} is not a readable file", 2)
    from mailwatch.cli.api_client import ApiClient

    return ApiClient(server, token, ca_file)
