"""The ``mailwatch`` command line: for on-call staff at a terminal on a mail host.

Every command reads one configuration (``-c FILE``, ``$MAILWATCH_CONFIG``, else
``./mailwatch.toml`` when present, else built-in defaults). Bad input gets a one-line error
and exit code 2; a failure while working gets exit code 1; never a traceback (``--debug``
shows it). Commands that only read open the store read-only and refuse a missing one.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import click

from mailwatch import config as config_module
from mailwatch import queries
from mailwatch.client import ApiClient
from mailwatch.durations import format_seconds, parse_duration
from mailwatch.errors import ConfigError, MailwatchError
from mailwatch.logs import configure as configure_logging
from mailwatch.model import Priority
from mailwatch.render import counts_table, scans_lines, stuck_table, table
from mailwatch.scanner import Scanner
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store
from mailwatch.terminal import visible

CONFIG_ENV = "MAILWATCH_CONFIG"


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"mailwatch: {message}", err=True)
    sys.exit(code)


def _config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    default = Path("mailwatch.toml")
    return default if default.is_file() else None


class Context:
    """What every command needs: the configuration path, loaded lazily."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._settings: config_module.Settings | None = None

    @property
    def settings(self) -> config_module.Settings:
        """The validated configuration (exit 2 with every problem listed if invalid)."""
        if self._settings is None:
            try:
                self._settings = config_module.load(self.path)
            except ConfigError as exc:
                for problem in exc.problems:
                    click.echo(f"mailwatch: config: {problem}", err=True)
                sys.exit(2)
            configure_logging(self._settings.log.level, self._settings.log.format)
        return self._settings

    @contextmanager
    def store(self, *, write: bool = False, create: bool = False) -> Iterator[Store]:
        """The configured store, closed afterwards.

        Read-only unless ``write``; a missing store is an error unless ``create``.
        """
        path = self.settings.store.path
        with Store(path, create=create, readonly=not (write or create)) as store:
            yield store


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


def _duration_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    return DurationParam().convert(value, _param, _ctx)


def _priority_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> Priority | None:
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


def _guard(func: Callable[..., None]) -> Callable[..., None]:
    """Turn mailwatch's own errors into one line on stderr and exit code 1."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except MailwatchError as exc:
            if _debugging():
                raise
            _fail(str(exc))

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


@click.group(cls=MailwatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
    help=f"Configuration file (default: ./mailwatch.toml if present; env {CONFIG_ENV}).",
)  # fmt: skip
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="mailwatch")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Watch mail queues and say when high-priority mail is stuck."""
    ctx.obj = Context(_config_path(config_path))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@_guard
def scan(ctx: Context, as_json: bool) -> None:
    """Run one probe cycle now and print per class: total, stuck, oldest age."""
    settings = ctx.settings
    if not settings.sources:
        _fail("no sources configured (add a [sources.NAME] table, or try `mailwatch demo`)", 2)
    with ctx.store(create=True) as store:
        scanner = Scanner(settings.classifier(), store)
        outcomes = asyncio.run(scanner.scan_all(build_sources(settings, store)))
    if as_json:
        click.echo(json.dumps([
            {"source": o.source, "ok": o.ok, "error": o.error,
             "duration_seconds": round(o.duration_seconds, 3),
             "classes": [{"class": c.name, "priority": str(c.priority), "total": c.total,
                          "stuck": c.stuck, "oldest_age_seconds": c.oldest_age_seconds}
                         for c in o.counts]}
            for o in outcomes
        ], indent=2))  # fmt: skip
    else:
        click.echo(counts_table([c for o in outcomes for c in o.counts]))
        for o in outcomes:
            if not o.ok:
                click.echo(f"source {o.source}: PROBE FAILED ({o.error_kind}): {o.error}", err=True)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


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
            _fail(f"--token-file: cannot read {token_file}: {exc.strerror}", 2)
    current = click.get_current_context(silent=True)
    ca_file = current.meta.get(_CA_FILE) if current is not None else None
    if ca_file is not None and not ca_file.is_file():
        _fail(f"--ca-file: {ca_file} is not a readable file", 2)
    return ApiClient(server, token, ca_file)


@cli.command()
@click.option("--class", "class_name", help="Only this class.")
@click.option("--priority", callback=_priority_option, help="Only this priority (P1…P4).")
@click.option(
    "--older-than", callback=_duration_option, help="Only messages older than this (e.g. 30m)."
)
@click.option("--source", help="Only this source.")
@click.option(
    "--all", "include_all", is_flag=True, help="List queued messages that are not stuck too."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show-subject", is_flag=True, help="Show subjects (personal data: use with care).")
@remote_options
@pass_ctx
@_guard
def stuck(
    ctx: Context,
    class_name: str | None,
    priority: Priority | None,
    older_than: float | None,
    source: str | None,
    include_all: bool,
    as_json: bool,
    show_subject: bool,
    server: str | None,
    token_file: Path | None,
) -> None:
    """List stuck messages, most urgent first (local store, or --server)."""
    client = api_client(server, token_file)
    now = _now()
    if client is not None:
        if show_subject:
            _fail("--show-subject: use `mailwatch show ID` against the server (it is audited)", 2)
        params = {
            "stuck": "false" if include_all else "true",
            "class": class_name or "",
            "priority": str(priority) if priority else "",
            "source": source or "",
            "older_than": f"{older_than}s" if older_than is not None else "",
            "limit": "1000",
        }
        items = client.request("GET", "/api/v1/messages", params=params)["items"]
        scans = client.request("GET", "/api/v1/summary")["scans"]
    else:
        settings = ctx.settings
        if class_name is not None and class_name not in settings.all_classes():
            _fail(f"--class: unknown class {class_name!r}", 2)
        wanted = queries.MessageFilter(not include_all, class_name, priority, older_than, source)
        with ctx.store() as store:
            items, _ = queries.messages(
                store, now, wanted, show_subject=show_subject,
                undeliverable_for=settings.undeliverable_for.seconds,
            )  # fmt: skip
            scans = queries.scans(store, now)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for line in scans_lines(scans):
        click.echo(line)
    if not scans:
        click.echo("no scan recorded yet: run `mailwatch scan` first")
    if items:
        click.echo(stuck_table(items, show_subject=show_subject))
    else:
        click.echo("nothing stuck" if not include_all else "nothing queued")


@cli.command()
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@remote_options
@pass_ctx
@_guard
def show(
    ctx: Context, ident: str, as_json: bool, server: str | None, token_file: Path | None
) -> None:
    """Show everything known about one message (by id or queue id). Audited: personal data."""
    client = api_client(server, token_file)
    if client is not None:
        fields = [
            tuple(f)
            for f in client.request("GET", f"/api/v1/messages/{quote(ident, safe='')}")["fields"]
        ]
    else:
        now = _now()
        with ctx.store(write=True) as store:  # writes the audit record of the view
            fields = queries.message(
                store, ident, now, undeliverable_for=ctx.settings.undeliverable_for.seconds
            )
            store.audit(now, getpass.getuser(), "view", f"message {fields[0][1]}", "cli")
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        lines = [(visible(str(label)), visible(str(value))) for label, value in fields]
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            click.echo(f"{label.ljust(width)}  {value}")


@cli.command()
@click.argument("eml", type=click.File("rb"))
@click.option("--source", default="cli", help="Source name to classify as.")
@click.option("--queue", default="deferred", help="Queue name to classify as.")
@pass_ctx
@_guard
def classify(ctx: Context, eml: Any, source: str, queue: str) -> None:
    """Classify a message file (or - for stdin) and explain which rule matched."""
    from mailwatch.eml import message_from_bytes

    message = message_from_bytes(eml.read(), source=source, queue=queue)
    result = ctx.settings.classifier().classify(message)
    for label, value in [
        ("class", result.name),
        ("priority", str(result.priority)),
        ("marking", message.marking or "-"),
        ("rule", result.rule),
        ("matched on", result.matched_on or "-"),
        ("subject", message.subject),
    ]:
        click.echo(f"{label:<11} {visible(value)}")


@cli.group("config")
def config_group() -> None:
    """Work with the configuration file."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE (default: the -c file); list every error with its key path."""
    path = file or ctx.find_object(Context).path  # type: ignore[union-attr]
    try:
        settings = config_module.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(2)
    errors, warnings = settings.checks()
    for error in errors:
        click.echo(error, err=True)
    for warning in warnings + settings.warnings():
        click.echo(f"warning: {warning}", err=True)
    if errors:
        sys.exit(2)
    classes = settings.all_classes()
    p1 = sum(1 for c in classes.values() if c.priority is Priority.P1)
    click.echo(
        f"{path or '(defaults)'}: OK: {len(classes)} classes ({p1} P1), "
        f"{len(settings.sources)} sources, {len(settings.alert_rules())} alert rules, "
        f"{len(settings.receivers)} receivers, store {settings.store.path}"
    )


@cli.command()
@click.option(
    "--dir", "state_dir", type=click.Path(path_type=Path), default=Path(".mailwatch-demo"),
    show_default=True, help="Where the private Postfix instance lives.",
)  # fmt: skip
@pass_ctx
@_guard
def demo(ctx: Context, state_dir: Path) -> None:
    """Scan a real Postfix and show what is stuck (starts a private one if none is configured)."""
    from mailwatch.demo import run_demo

    run_demo(ctx.settings, state_dir, echo=click.echo, now=_now)


@cli.command()
@click.option(
    "--demo", is_flag=True,
    help="With no sources configured: start and watch the demo's private Postfix.",
)  # fmt: skip
@click.option(
    "--demo-dir", type=click.Path(path_type=Path), default=Path(".mailwatch-demo"),
    show_default=True, help="With --demo: where the demo's private Postfix lives.",
)  # fmt: skip
@pass_ctx
@_guard
def run(ctx: Context, demo: bool, demo_dir: Path) -> None:
    """Run the service: probe every source, alert, serve metrics, the API and the status page.

    With no sources configured it refuses to start, unless --demo: then it watches the
    demo's private Postfix. Secrets that are empty or missing stop it before it starts.
    """
    from mailwatch.demo import with_private_postfix
    from mailwatch.runner import run_service

    settings = ctx.settings
    if not settings.sources and not demo:
        _fail("no sources configured: add a [sources.NAME] table (see mailwatch.example.toml),"
              " or pass --demo to watch a private demo Postfix", 2)  # fmt: skip
    errors, warnings = settings.checks()
    for warning in warnings:
        click.echo(f"mailwatch: warning: {warning}", err=True)
    if errors:
        for error in errors:
            click.echo(f"mailwatch: config: {error}", err=True)
        sys.exit(2)

    def adjust(settings: config_module.Settings) -> config_module.Settings:
        if settings.sources or not demo:
            return settings
        return with_private_postfix(settings, demo_dir, click.echo)

    asyncio.run(run_service(adjust(settings), echo=click.echo, config_path=ctx.path,
                            adjust=adjust))  # fmt: skip


@cli.command("classes")
@pass_ctx
def list_classes(ctx: Context) -> None:
    """List the configured classes, most urgent first."""
    classifier = ctx.settings.classifier()
    click.echo(table(
        ["CLASS", "PRI", "STUCK AFTER", "RULES", "DESCRIPTION"],
        [[c.name, str(c.priority), str(c.stuck_after), str(len(c.rules)), c.description]
         for c in classifier.all_classes],
    ))  # fmt: skip


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mailwatch")


# Command groups defined in their own modules register themselves on import.
from mailwatch import cli_alerts, cli_ops  # noqa: E402, F401
