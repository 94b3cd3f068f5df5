"""Commands that run mailwatch: ``scan`` (one cycle), ``run``, ``demo``, ``config check``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailwatch.cli.common import (
    Context,
    fail,
    guard,
    pass_ctx,
    utc_now,
)
from mailwatch.cli.render import counts_table, stuck_table
from mailwatch.config import settings as config_module
from mailwatch.config.checks import checks
from mailwatch.core.model import Priority
from mailwatch.errors import ConfigError, FleetError, StoreError

if TYPE_CHECKING:
    from mailwatch.app.fleet_push import FleetPusher
    from mailwatch.app.scanner import Scanner, ScanOutcome
    from mailwatch.sources import Source


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@guard
def scan(ctx: Context, as_json: bool) -> None:
    """Run one probe cycle now and print per class: total, stuck, oldest age."""
    # Imported here: the read commands (stuck, check) start without the source adapters.
    from mailwatch.app.scanner import Scanner
    from mailwatch.sources.factory import build_sources

    settings = ctx.settings
    if not settings.sources:
        fail("no sources configured (add a [sources.NAME] table, or try `mailwatch demo`)", 2)
    with ctx.store(create=True) as store:
        scanner = Scanner(settings.classifier(), store)
        pusher = None
        if settings.fleet is not None:  # queued locally, then one push attempt
            from mailwatch.app.fleet_push import FleetPusher

            pusher = FleetPusher(settings.fleet, store, scanner.resync)
            scanner.sink = pusher
        outcomes: list[ScanOutcome] = []
        # The coroutine returns nothing on purpose: on Python 3.11 asyncio.run's clean-up after
        # a SIGINT reprs the main task's result (CPython issue 112559); at 100,000 messages the
        # repr of the outcomes cost seconds and hundreds of MiB.
        asyncio.run(_scan_and_push(scanner, build_sources(settings, store), pusher, outcomes))
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


async def _scan_and_push(
    scanner: Scanner,
    sources: list[Source],
    pusher: FleetPusher | None,
    outcomes: list[ScanOutcome],
) -> None:
    outcomes.extend(await scanner.scan_all(sources))
    if pusher is not None:
        try:
            await pusher.drain()
        except (FleetError, StoreError) as exc:  # stays queued for the next scan or `run`
            click.echo(f"fleet: not pushed now (queued locally): {exc}", err=True)
        finally:
            await pusher.close()


@click.group("config")
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
    errors, warnings = checks(settings)
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


@click.command()
@click.option(
    "--dir", "state_dir", type=click.Path(path_type=Path), default=Path(".mailwatch-demo"),
    show_default=True, help="Where the private Postfix instance lives.",
)  # fmt: skip
@pass_ctx
@guard
def demo(ctx: Context, state_dir: Path) -> None:
    """Scan a real Postfix and show what is stuck (starts a private one if none is configured)."""
    from mailwatch.app.demo import run_demo

    outcomes, rows, settings = run_demo(ctx.settings, state_dir, echo=click.echo, now=utc_now)
    click.echo("")
    click.echo(counts_table([c for o in outcomes for c in o.counts if c.total]))
    for outcome in outcomes:
        if not outcome.ok:
            click.echo(f"source {outcome.source}: PROBE FAILED: {outcome.error}")
    click.echo("")
    click.echo(f"Stuck now ({len(rows)}), store {settings.store.path}:")
    click.echo(
        stuck_table(rows)
        if rows
        else "nothing stuck yet: deferred mail becomes stuck after its SLA"
    )
    click.echo("")
    click.echo("Next: `mailwatch stuck`, `mailwatch show QUEUE_ID`, `mailwatch classes`.")


@click.command()
@click.option(
    "--demo", is_flag=True,
    help="With no sources configured: start and watch the demo's private Postfix.",
)  # fmt: skip
@click.option(
    "--demo-dir", type=click.Path(path_type=Path), default=Path(".mailwatch-demo"),
    show_default=True, help="With --demo: where the demo's private Postfix lives.",
)  # fmt: skip
@pass_ctx
@guard
def run(ctx: Context, demo: bool, demo_dir: Path) -> None:
    """Run the service: probe every source, alert, serve metrics, the API and the status page.

    With no sources configured it refuses to start, unless --demo: then it watches the
    demo's private Postfix. Secrets that are empty or missing stop it before it starts.
    """
    from mailwatch.app.demo import with_private_postfix
    from mailwatch.web.runner import run_service

    settings = ctx.settings
    if not settings.sources and not demo:
        fail("no sources configured: add a [sources.NAME] table (see mailwatch.example.toml),"
              " or pass --demo to watch a private demo Postfix", 2)  # fmt: skip
    errors, warnings = checks(settings)
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
