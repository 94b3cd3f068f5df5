"""Operations commands: ``check`` (Nagios/Icinga), ``backlog``, ``prune``, per-message actions.

``retry``, ``hold``, ``release`` and ``flush`` ask for confirmation on a terminal (``--yes``
skips it), refuse a message mailwatch does not know, and are audited with who (the login name,
or with ``--server`` the API token's name), on behalf of whom (``--by``), when, what and the
result. ``audit`` shows the trail.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import click

from mailwatch.app.actions import Action, perform
from mailwatch.cli.common import (
    Context,
    FiniteFloat,
    api_client,
    fail,
    guard,
    pass_ctx,
    remote_options,
)
from mailwatch.cli.render import bucketed, sparkline, table
from mailwatch.cli.terminal import visible
from mailwatch.core.backlog import WINDOW_HALFLIVES, drain_estimate
from mailwatch.core.durations import format_seconds
from mailwatch.errors import ActionFailed


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@guard
def prune(ctx: Context, as_json: bool) -> None:
    """Delete history older than store.retention (audit: store.audit_retention) now.

    ``mailwatch run`` does this every hour by itself; run this after scans from cron.
    """
    config = ctx.settings.store
    with ctx.store(write=True) as store:
        counts = store.prune(
            datetime.now(UTC),
            timedelta(seconds=config.retention.seconds),
            timedelta(seconds=config.audit_retention.seconds),
        )
    deleted = asdict(counts)
    if as_json:
        click.echo(json.dumps(deleted))
    else:
        click.echo(table(["TABLE", "ROWS DELETED"], [[k, str(v)] for k, v in deleted.items()]))


@click.command()
@click.option("--class", "class_name", help="Only this class.")
@click.option("--source", help="Only this source.")
@click.option("--hours", type=FiniteFloat(0, 24 * 366), default=24, show_default=True,
              help="History to show (at most 366 days).")  # fmt: skip
@pass_ctx
@guard
def backlog(ctx: Context, class_name: str | None, source: str | None, hours: float) -> None:
    """Per-class backlog history with a sparkline, current drain rate and ETA to clear."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=hours)
    halflife = ctx.settings.metrics.drain_halflife.seconds  # as the metrics and the status page
    with ctx.store() as store:
        history = store.class_history(start)
        # the fit window counts back from the latest scan (drain_estimate trims to it)
        fit = store.class_history(now - timedelta(seconds=(WINDOW_HALFLIVES + 1) * halflife))
    rows = []
    for (src, cls), points in sorted(history.items()):
        if (class_name and cls != class_name) or (source and src != source):
            continue
        if not any(v for _, v in points) and not class_name:
            continue
        estimate = drain_estimate(fit.get((src, cls), ()), halflife)
        eta = "-" if estimate.eta_seconds == 0 else format_seconds(estimate.eta_seconds)
        rows.append([src, cls, sparkline(bucketed(points, start, now, 48)), str(points[-1][1]),
                     f"{estimate.rate * 3600:+.0f}/h", eta])  # fmt: skip
    if not rows:
        click.echo("no backlog recorded in that window")
        return
    click.echo(table(["SOURCE", "CLASS", f"LAST {hours:g}H", "NOW", "DRAIN", "ETA"], rows))


def _act(ctx: Context, action: Action, ident: str | None, source: str | None, yes: bool,
         by: str | None, remote: tuple[str | None, Path | None]) -> None:  # fmt: skip
    """Confirm, then act locally (audited with the login name) or through ``--server``."""
    what = f"{action.value} {ident}" if ident else f"flush {source or 'every Postfix source'}"
    client = api_client(*remote)
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to {what} without confirmation: add --yes", 2)
        click.confirm(f"{what}?", abort=True)
    if client is not None:  # the server audits its token's name, and ``by`` as on behalf of
        path = (f"/api/v1/messages/{quote(ident, safe='')}/{action.value}" if ident
                else "/api/v1/flush")  # fmt: skip
        reply = client.request("POST", path, {"by": by} if by else {},
                               params={"source": source} if source else None)  # fmt: skip
        click.echo(visible(f"{action.value}: {reply['target']}: {reply['output']}"))
        return
    with ctx.store(create=True) as store:  # the audit record is kept even before a first scan
        try:
            result = asyncio.run(perform(ctx.settings, store, action, ident=ident, source=source,
                                         actor=getpass.getuser(), now=datetime.now(UTC),
                                         on_behalf_of=by))  # fmt: skip
        except ActionFailed as exc:
            fail(str(exc))
    click.echo(visible(f"{action.value}: {result.target}: {result.output}"))


_yes = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
_by = click.option("--by", "by", help="On behalf of whom (audited next to the login name, or"
                   " next to the token's name with --server).")  # fmt: skip


def _message_action(action: Action, help_text: str) -> click.Command:
    """The command acting on one message (``retry``, ``hold``, ``release``)."""

    @click.command(action.value, help=help_text)
    @click.argument("ident")
    @_yes
    @_by
    @remote_options
    @pass_ctx
    @guard
    def command(ctx: Context, ident: str, yes: bool, by: str | None, server: str | None,
                token_file: Path | None) -> None:  # fmt: skip
        _act(ctx, action, ident, None, yes, by, (server, token_file))

    return command


retry = _message_action(Action.RETRY, "Retry delivery of one message now (postqueue -i).")
hold = _message_action(Action.HOLD, "Put one message on hold (postsuper -h).")
release = _message_action(Action.RELEASE, "Release one held message (postsuper -H).")


@click.command()
@click.option("--source", help="Only this Postfix source (default: all).")
@_yes
@_by
@remote_options
@pass_ctx
@guard
def flush(ctx: Context, source: str | None, yes: bool, by: str | None, server: str | None,
          token_file: Path | None) -> None:  # fmt: skip
    """Ask Postfix to retry every deferred message now (postqueue -f)."""
    _act(ctx, Action.FLUSH, None, source, yes, by, (server, token_file))


@click.command()
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="How many records, newest first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@guard
def audit(ctx: Context, limit: int, as_json: bool) -> None:
    """Show the audit trail: who (token or login) acted, on behalf of whom, what, when."""
    with ctx.store() as store:
        records = store.audit_trail(limit)
    items = [
        {"at": r.at.isoformat(), "actor": r.actor, "on_behalf_of": r.on_behalf_of,
         "action": r.action, "target": r.target, "detail": r.detail}
        for r in records
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(table(
        ["AT", "ACTOR", "ON BEHALF OF", "ACTION", "TARGET", "DETAIL"],
        [[r.at.isoformat(), r.actor, r.on_behalf_of or "-", r.action, r.target, r.detail or "-"]
         for r in records],
    ))  # fmt: skip
