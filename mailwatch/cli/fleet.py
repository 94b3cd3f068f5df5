"""The fleet commands: ``fleet migrate``, ``fleet status``, and ``stuck --fleet``'s reading."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from mailwatch.app import fleet_queries, queries
from mailwatch.cli.common import Context, fail, guard, pass_ctx, utc_now
from mailwatch.cli.render import stuck_table
from mailwatch.config.fleet import FleetConfig
from mailwatch.fleet import schema
from mailwatch.fleet.connect import connect
from mailwatch.fleet.reader import FleetReader


def fleet_config(ctx: Context) -> FleetConfig:
    """The ``[fleet]`` table, or exit 2 saying it is missing."""
    config = ctx.settings.fleet
    if config is None:
        fail('no [fleet] configured (url = "postgresql://…"): see README, Fleet', 2)
    return config


@contextmanager
def fleet_reader(ctx: Context) -> Iterator[FleetReader]:
    """A reader on a new connection to the fleet database (schema checked), closed after."""
    with connect(fleet_config(ctx)) as db:
        schema.require_current(db)
        yield FleetReader(db)


@click.group("fleet")
def fleet_group() -> None:
    """The central PostgreSQL store shared by every agent ([fleet])."""


@fleet_group.command("migrate")
@pass_ctx
@guard
def migrate(ctx: Context) -> None:
    """Create or upgrade the fleet schema (versioned; running it again changes nothing)."""
    with connect(fleet_config(ctx)) as db:
        applied = schema.migrate(db)
        now = schema.version(db)
    if applied:
        click.echo(f"fleet schema: applied {', '.join(map(str, applied))}; now version {now}")
    else:
        click.echo(f"fleet schema: up to date (version {now})")


@fleet_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@guard
def status(ctx: Context, as_json: bool) -> None:
    """Every agent and source: heartbeat age, health, stuck count (unknown when stale)."""
    config = fleet_config(ctx)
    with fleet_reader(ctx) as reader:
        items = fleet_queries.status(
            reader, utc_now(), stale_after=config.stale_after.seconds,
            undeliverable_for=ctx.settings.undeliverable_for.seconds,
        )  # fmt: skip
    if as_json:
        click.echo(json.dumps(items, indent=2))
    else:
        for line in fleet_queries.status_lines(items) or ["no agent has pushed yet"]:
            click.echo(line)
    if any(item["state"] != "ok" for item in items):
        sys.exit(1)


def stuck_fleet(
    ctx: Context, wanted: queries.MessageFilter, *, as_json: bool, show_subject: bool
) -> None:
    """``mailwatch stuck --fleet``: the same listing, read from the fleet database."""
    config = fleet_config(ctx)
    now, settings = utc_now(), ctx.settings
    if show_subject and not config.include_subjects:
        fail("--show-subject --fleet: subjects are not stored centrally (include_subjects)", 2)
    with fleet_reader(ctx) as reader:
        items, total = fleet_queries.messages(
            reader, now, wanted, show_subject=show_subject,
            undeliverable_for=settings.undeliverable_for.seconds,
        )  # fmt: skip
        sources: list[dict[str, Any]] = fleet_queries.status(
            reader, now, stale_after=config.stale_after.seconds,
            undeliverable_for=settings.undeliverable_for.seconds,
        )  # fmt: skip
    more = max(total - len(items), 0)
    footer = f"{more} more; use --limit N, or --limit 0 for every one" if more else None
    if as_json:
        click.echo(json.dumps(items, indent=2))
        if footer:
            click.echo(footer, err=True)
        return
    for line in fleet_queries.status_lines(sources):
        click.echo(line)
    if not sources:
        click.echo("no agent has pushed to the fleet yet")
    if items:
        click.echo(stuck_table(items, show_subject=show_subject))
        if footer:
            click.echo(footer)
    else:
        click.echo("nothing stuck" if wanted.stuck_only else "nothing queued")
