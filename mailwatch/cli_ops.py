"""Operations commands: ``check`` (Nagios/Icinga), ``backlog``, ``prune``, per-message actions.

``retry``, ``hold``, ``release`` and ``flush`` ask for confirmation on a terminal (``--yes``
skips it), refuse a message mailwatch does not know, and are audited with who, when, what
and the result.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import click

from mailwatch.actions import Action, ActionFailed, perform
from mailwatch.backlog import drain_estimate
from mailwatch.cli import Context, FiniteFloat, _duration_option, _fail, _guard, cli, pass_ctx
from mailwatch.durations import format_seconds
from mailwatch.model import Priority
from mailwatch.render import bucketed, judge_stored, sparkline, table

NAGIOS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def _nagios_exit(code: int, text: str, perfdata: list[str]) -> None:
    click.echo(
        f"MAILWATCH {NAGIOS[code]} - {text}" + (f" | {' '.join(perfdata)}" if perfdata else "")
    )
    sys.exit(code)


@cli.command()
@click.option("--class", "classes", multiple=True, help="Only these classes (repeatable).")
@click.option("--priority", "priorities", multiple=True, help="Only these priorities, e.g. P1.")
@click.option("--warn", type=int, default=1, show_default=True, help="WARNING at this many stuck.")
@click.option("--crit", type=int, default=1, show_default=True, help="CRITICAL at this many stuck.")
@click.option("--stale", callback=_duration_option, default="5m", show_default=True,
              help="UNKNOWN when a source's last good scan is older than this.")  # fmt: skip
@pass_ctx
def check(
    ctx: Context,
    classes: tuple[str, ...],
    priorities: tuple[str, ...],
    warn: int,
    crit: int,
    stale: float,
) -> None:
    """Nagios/Icinga-compatible check: exit 0/1/2/3 with one status line and perfdata."""
    try:
        wanted = {Priority.parse(p) for p in priorities}
        now = datetime.now(UTC)
        with ctx.store() as store:
            scans = store.last_scans()
            rows = [r for r in judge_stored(store.queued(), now) if r.stuck]
    except Exception as exc:  # noqa: BLE001 - a monitoring check must answer UNKNOWN, not crash
        _nagios_exit(3, f"cannot read mailwatch state: {exc}", [])
    if not scans:
        _nagios_exit(3, "no scan recorded yet", [])
    old = [n for n, s in scans.items() if not s.ok or (now - s.finished_at).total_seconds() > stale]
    rows = [r for r in rows if (not classes or r.message.class_name in classes)
            and (not wanted or r.message.priority in wanted)]  # fmt: skip
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.message.class_name] = counts.get(row.message.class_name, 0) + 1
    names = list(classes) or sorted(counts)
    perf = [f"{n}_stuck={counts.get(n, 0)};{warn};{crit};0" for n in names]
    total = len(rows)
    detail = ", ".join(f"{n}={c}" for n, c in sorted(counts.items())) or "none"
    if old:
        _nagios_exit(
            3, f"{total} stuck ({detail}); stale or failing sources: {', '.join(old)}", perf
        )
    code = 2 if total >= crit else 1 if total >= warn else 0
    _nagios_exit(code, f"{total} stuck ({detail})", perf)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@_guard
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


@cli.command()
@click.option("--class", "class_name", help="Only this class.")
@click.option("--source", help="Only this source.")
@click.option("--hours", type=FiniteFloat(0, 24 * 366), default=24, show_default=True,
              help="History to show (at most 366 days).")  # fmt: skip
@pass_ctx
@_guard
def backlog(ctx: Context, class_name: str | None, source: str | None, hours: float) -> None:
    """Per-class backlog history with a sparkline, current drain rate and ETA to clear."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=hours)
    with ctx.store() as store:
        history = store.class_history(start)
    rows = []
    for (src, cls), points in sorted(history.items()):
        if (class_name and cls != class_name) or (source and src != source):
            continue
        if not any(v for _, v in points) and not class_name:
            continue
        recent = [p for p in points if p[0] >= now - timedelta(hours=1)]
        estimate = drain_estimate(recent)
        eta = "-" if estimate.eta_seconds == 0 else format_seconds(estimate.eta_seconds)
        rows.append([src, cls, sparkline(bucketed(points, start, now, 48)), str(points[-1][1]),
                     f"{estimate.rate * 3600:+.0f}/h", eta])  # fmt: skip
    if not rows:
        click.echo("no backlog recorded in that window")
        return
    click.echo(table(["SOURCE", "CLASS", f"LAST {hours:g}H", "NOW", "DRAIN", "ETA"], rows))


def _act(ctx: Context, action: Action, ident: str | None, source: str | None, yes: bool,
         by: str | None) -> None:  # fmt: skip
    actor = by or getpass.getuser()
    what = f"{action.value} {ident}" if ident else f"flush {source or 'every Postfix source'}"
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"refusing to {what} without confirmation: add --yes", 2)
        click.confirm(f"{what}?", abort=True)
    with ctx.store(create=True) as store:  # the audit record is kept even before a first scan
        try:
            result = asyncio.run(perform(ctx.settings, store, action, ident=ident, source=source,
                                         actor=actor, now=datetime.now(UTC)))  # fmt: skip
        except ActionFailed as exc:
            _fail(str(exc))
    click.echo(f"{action.value}: {result.target}: {result.output}")


_yes = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
_by = click.option("--by", "by", help="Who is doing this (default: the login name; audited).")


@cli.command()
@click.argument("ident")
@_yes
@_by
@pass_ctx
@_guard
def retry(ctx: Context, ident: str, yes: bool, by: str | None) -> None:
    """Retry delivery of one message now (postqueue -i)."""
    _act(ctx, Action.RETRY, ident, None, yes, by)


@cli.command()
@click.argument("ident")
@_yes
@_by
@pass_ctx
@_guard
def hold(ctx: Context, ident: str, yes: bool, by: str | None) -> None:
    """Put one message on hold (postsuper -h)."""
    _act(ctx, Action.HOLD, ident, None, yes, by)


@cli.command()
@click.argument("ident")
@_yes
@_by
@pass_ctx
@_guard
def release(ctx: Context, ident: str, yes: bool, by: str | None) -> None:
    """Release one held message (postsuper -H)."""
    _act(ctx, Action.RELEASE, ident, None, yes, by)


@cli.command()
@click.option("--source", help="Only this Postfix source (default: all).")
@_yes
@_by
@pass_ctx
@_guard
def flush(ctx: Context, source: str | None, yes: bool, by: str | None) -> None:
    """Ask Postfix to retry every deferred message now (postqueue -f)."""
    _act(ctx, Action.FLUSH, None, source, yes, by)
