"""``mailwatch alerts``, ``ack``, ``silence``, ``unsilence``: the alerting commands.

Every acknowledgement and silence is written to the audit table with who, when and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click

from mailwatch.alerting.engine import AlertEngine
from mailwatch.alerting.lifecycle import AlertStatus, NotAcknowledgeable, Silence
from mailwatch.cli import Context, _duration_option, _fail, _guard, cli, pass_ctx
from mailwatch.durations import format_seconds
from mailwatch.render import table
from mailwatch.store import Store


def _engine(ctx: Context, store: Store) -> AlertEngine:
    settings = ctx.settings
    return AlertEngine(
        [rule.to_rule() for rule in settings.alert_rules()],
        {name: r.include_subjects for name, r in settings.receivers.items()},
        {c.name: c.priority for c in settings.classifier().all_classes},
        store,
    )


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include inactive and resolved alerts.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@_guard
def alerts(ctx: Context, show_all: bool, as_json: bool) -> None:
    """Show alerts: firing, acknowledged and pending (most urgent first), and silences."""
    now = datetime.now(UTC)
    with ctx.store() as store:
        states = list(store.alert_states().values())
        silences = store.silences(now)
        pending = store.outbox_pending()
    order = {AlertStatus.FIRING: 0, AlertStatus.ACKNOWLEDGED: 1, AlertStatus.PENDING: 2,
             AlertStatus.RESOLVED: 3, AlertStatus.INACTIVE: 4}  # fmt: skip
    shown = [s for s in states if show_all or s.status in (AlertStatus.FIRING,
             AlertStatus.ACKNOWLEDGED, AlertStatus.PENDING)]  # fmt: skip
    shown.sort(key=lambda s: (order[s.status], -(s.details.oldest_age_seconds)))
    if as_json:
        click.echo(json.dumps({
            "alerts": [{
                "id": str(s.key), "rule": s.key.rule, "class": s.key.class_name,
                "source": s.key.source, "status": s.status.value,
                "since": s.since.isoformat() if s.since else None,
                "fired_at": s.fired_at.isoformat() if s.fired_at else None,
                "acked_by": s.acked_by, "count": s.details.count,
                "oldest_age_seconds": s.details.oldest_age_seconds, "ids": list(s.details.ids),
                "silenced": any(x.matches(s.key, now) for x in silences),
            } for s in shown],
            "silences": [{"id": x.id, "class": x.class_name, "source": x.source,
                          "ends": x.ends.isoformat(), "reason": x.reason, "by": x.by}
                         for x in silences],
            "outbox_pending": pending,
        }, indent=2))  # fmt: skip
        return
    if not shown:
        click.echo("no alerts firing")
    else:
        rows = [
            [str(s.key), s.status.value + (" (silenced)" if any(x.matches(s.key, now)
             for x in silences) else ""), str(s.details.count),
             format_seconds(s.details.oldest_age_seconds), s.acked_by or "-",
             ",".join(s.details.ids[:5]) or "-"]
            for s in shown
        ]  # fmt: skip
        click.echo(table(["ALERT", "STATUS", "COUNT", "OLDEST", "ACKED BY", "IDS"], rows))
    for x in silences:
        click.echo(f"silence {x.id}: class={x.class_name or '*'} source={x.source or '*'} "
                   f"until {x.ends.isoformat()} by {x.by}: {x.reason}")  # fmt: skip
    if pending:
        click.echo(f"{pending} notification(s) waiting in the outbox")


@cli.command()
@click.argument("alert_id")
@click.option("--by", "by", required=True, help="Who is acknowledging (recorded).")
@click.option("--note", help="Why, or what is being done (recorded).")
@pass_ctx
@_guard
def ack(ctx: Context, alert_id: str, by: str, note: str | None) -> None:
    """Acknowledge a firing alert: stops reminders and escalation for this episode."""
    with ctx.store() as store:
        try:
            state = _engine(ctx, store).acknowledge(alert_id, by, note, datetime.now(UTC))
        except NotAcknowledgeable as exc:
            _fail(str(exc))
    click.echo(f"acknowledged {state.key} by {by}")


@cli.command()
@click.option("--class", "class_name", help="Silence this class (default: every class).")
@click.option("--source", help="Only in this source.")
@click.option("--for", "duration", required=True, callback=_duration_option,
              help="How long, e.g. 2h.")  # fmt: skip
@click.option("--reason", required=True, help="Why (recorded).")
@click.option("--by", "by", required=True, help="Who (recorded).")
@pass_ctx
@_guard
def silence(
    ctx: Context, class_name: str | None, source: str | None, duration: float, reason: str, by: str
) -> None:
    """Suppress alert notifications for a class (and source) for a while."""
    if class_name is None and source is None:
        _fail("give --class or --source (silencing everything is not allowed)", 2)
    if class_name is not None and class_name not in ctx.settings.all_classes():
        _fail(f"--class: unknown class {class_name!r}", 2)
    now = datetime.now(UTC)
    with ctx.store() as store:
        silence_id = store.add_silence(
            Silence(0, class_name, source, now, now + timedelta(seconds=duration), reason, by)
        )
    click.echo(f"silence {silence_id} until {(now + timedelta(seconds=duration)).isoformat()}")


@cli.command()
@click.argument("silence_id", type=int)
@click.option("--by", "by", required=True, help="Who (recorded).")
@pass_ctx
@_guard
def unsilence(ctx: Context, silence_id: int, by: str) -> None:
    """End a silence early."""
    with ctx.store() as store:
        if not store.remove_silence(silence_id, by, datetime.now(UTC)):
            _fail(f"no active silence {silence_id}")
    click.echo(f"silence {silence_id} removed")
