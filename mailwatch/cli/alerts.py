"""``mailwatch alerts``, ``ack``, ``silence``, ``unsilence``: the alerting commands.

Every acknowledgement and silence is written to the audit table with who, when and why: the
login name (or, with ``--server``, the API token's name) as the actor, and ``--by`` apart, as
"on behalf of".
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from mailwatch.alerting.lifecycle import SILENCE_MAX_SECONDS, Silence
from mailwatch.app import queries
from mailwatch.app.alert_engine import AlertEngine
from mailwatch.cli.common import (
    ROW_ID,
    Context,
    DurationParam,
    api_client,
    fail,
    guard,
    pass_ctx,
    remote_options,
)
from mailwatch.cli.render import table
from mailwatch.cli.terminal import visible
from mailwatch.core.durations import format_seconds
from mailwatch.errors import NotAcknowledgeable
from mailwatch.store import Store
from mailwatch.store.alerts import acting


def _engine(ctx: Context, store: Store) -> AlertEngine:
    settings = ctx.settings
    return AlertEngine(
        [rule.to_rule() for rule in settings.alert_rules()],
        {name: r.include_subjects for name, r in settings.receivers.items()},
        {c.name: c.priority for c in settings.classifier().all_classes},
        store,
    )


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include inactive and resolved alerts.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@remote_options
@pass_ctx
@guard
def alerts(
    ctx: Context, show_all: bool, as_json: bool, server: str | None, token_file: Path | None
) -> None:
    """Show alerts: firing, acknowledged and pending (most urgent first), and silences."""
    client = api_client(server, token_file)
    if client is not None:
        view = client.request("GET", "/api/v1/alerts", params={"all": str(show_all).lower()})
    else:
        with ctx.store() as store:
            view = queries.alerts(store, datetime.now(UTC), show_all=show_all)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    shown = view["alerts"]
    if not shown:
        click.echo("no alerts firing")
    else:
        rows = [
            [a["id"], a["status"] + (" (silenced)" if a["silenced"] else ""), str(a["count"]),
             format_seconds(a["oldest_age_seconds"]), a["acked_by"] or "-",
             ",".join(a["ids"][:5]) or "-"]
            for a in shown
        ]  # fmt: skip
        click.echo(table(["ALERT", "STATUS", "COUNT", "OLDEST", "ACKED BY", "IDS"], rows))
    for x in view["silences"]:
        click.echo(visible(f"silence {x['id']}: class={x['class'] or '*'} "
                           f"source={x['source'] or '*'} until {x['ends']} by {x['by']}: "
                           f"{x['reason']}"))  # fmt: skip
    if view["outbox_pending"]:
        click.echo(f"{view['outbox_pending']} notification(s) waiting in the outbox")


@click.command()
@click.argument("alert_id")
@click.option("--by", "by", required=True, help="Who is acknowledging (recorded).")
@click.option("--note", help="Why, or what is being done (recorded).")
@remote_options
@pass_ctx
@guard
def ack(
    ctx: Context, alert_id: str, by: str, note: str | None, server: str | None,
    token_file: Path | None,
) -> None:  # fmt: skip
    """Acknowledge a firing alert: stops reminders and escalation for this episode."""
    client = api_client(server, token_file)
    if client is not None:
        client.request("POST", f"/api/v1/alerts/{alert_id}/ack", {"by": by, "note": note})
        click.echo(f"acknowledged {alert_id} by {by}")
        return
    with ctx.store(write=True) as store:
        try:
            state = _engine(ctx, store).acknowledge(
                alert_id, getpass.getuser(), note, datetime.now(UTC), on_behalf_of=by
            )
        except NotAcknowledgeable as exc:
            fail(str(exc))
    click.echo(f"acknowledged {state.key} by {by}")


@click.command()
@click.option("--class", "class_name", help="Silence this class (default: every class).")
@click.option("--source", help="Only in this source.")
@click.option("--for", "duration", required=True, type=DurationParam(most=SILENCE_MAX_SECONDS),
              help="How long, e.g. 2h (at most 90d).")  # fmt: skip
@click.option("--reason", required=True, help="Why (recorded).")
@click.option("--by", "by", required=True, help="Who (recorded).")
@remote_options
@pass_ctx
@guard
def silence(
    ctx: Context, class_name: str | None, source: str | None, duration: float, reason: str,
    by: str, server: str | None, token_file: Path | None,
) -> None:  # fmt: skip
    """Suppress alert notifications for a class (and source) for a while."""
    if class_name is None and source is None:
        fail("give --class or --source (silencing everything is not allowed)", 2)
    client = api_client(server, token_file)
    if client is not None:
        body = {"class": class_name, "source": source, "for": f"{duration}s", "reason": reason,
                "by": by}  # fmt: skip
        reply = client.request("POST", "/api/v1/silences", body)
        click.echo(f"silence {reply['id']} for {format_seconds(duration)}")
        return
    if class_name is not None and class_name not in ctx.settings.all_classes():
        fail(f"--class: unknown class {class_name!r}", 2)
    now = datetime.now(UTC)
    with ctx.store(write=True) as store:
        silence_id = store.add_silence(
            Silence(0, class_name, source, now, now + timedelta(seconds=duration), reason,
                    acting(getpass.getuser(), by)),
            actor=getpass.getuser(), on_behalf_of=by,
        )  # fmt: skip
    click.echo(f"silence {silence_id} until {(now + timedelta(seconds=duration)).isoformat()}")


@click.command()
@click.argument("silence_id", type=ROW_ID)
@click.option("--by", "by", required=True, help="Who (recorded).")
@pass_ctx
@guard
def unsilence(ctx: Context, silence_id: int, by: str) -> None:
    """End a silence early."""
    with ctx.store(write=True) as store:
        if not store.remove_silence(silence_id, getpass.getuser(), datetime.now(UTC),
                                    on_behalf_of=by):  # fmt: skip
            fail(f"no active silence {silence_id}")
    click.echo(f"silence {silence_id} removed")
