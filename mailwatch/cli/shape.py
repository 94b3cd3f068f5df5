"""``mailwatch shape``: the qshape matrix (recipient domain by age) from the store, P1 first."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mailwatch.app import queries
from mailwatch.cli.common import (
    Context,
    api_client,
    fail,
    guard,
    pass_ctx,
    priority_option,
    remote_options,
    utc_now,
)
from mailwatch.cli.terminal import visible
from mailwatch.core.model import Priority
from mailwatch.core.shape import Shape, ShapeRow, render_text


@click.command()
@click.argument("queues", nargs=-1)
@click.option("--class", "class_name", help="Only this class.")
@click.option("--priority", callback=priority_option, help="Only this priority (P1…P4).")
@click.option("--source", help="Only this source.")
@click.option(
    "--messages", "count_messages", is_flag=True,
    help="Count messages per domain (qshape, and the default, count recipients).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@remote_options
@pass_ctx
@guard
def shape(
    ctx: Context,
    queues: tuple[str, ...],
    class_name: str | None,
    priority: Priority | None,
    source: str | None,
    count_messages: bool,
    as_json: bool,
    server: str | None,
    token_file: Path | None,
) -> None:
    """Recipient domains by age buckets of the queued mail, like qshape (QUEUES: e.g. deferred).

    Columns are qshape's: T (total), then ages up to 5, 10, 20 … 1280 minutes, and 1280+.
    Rows carry their most urgent priority; P1 rows come first.
    """
    client = api_client(server, token_file)
    if client is not None:
        params = {
            "queue": ",".join(queues), "class": class_name or "",
            "priority": str(priority) if priority else "", "source": source or "",
            "count": "messages" if count_messages else "recipients",
        }  # fmt: skip
        body = client.request("GET", "/api/v1/shape", params=params)
        matrix = Shape(
            headings=list(body["headings"]), total=list(body["total"]), counting=body["counting"],
            rows=[ShapeRow(r["domain"], Priority.parse(r["priority"]), list(r["counts"]))
                  for r in body["rows"]],
        )  # fmt: skip
    else:
        if class_name is not None and class_name not in ctx.settings.all_classes():
            fail(f"--class: unknown class {class_name!r}", 2)
        wanted = queries.ShapeFilter(
            queues=queues, class_name=class_name, priority=priority, source=source,
            messages=count_messages,
        )  # fmt: skip
        with ctx.store() as store:
            matrix = queries.shape(store, utc_now(), wanted)
    if as_json:
        click.echo(json.dumps(matrix.as_json(), indent=2))
    elif not matrix.rows:
        click.echo("nothing queued")
    else:
        for row in matrix.rows:  # domains come from mail: never let them drive the terminal
            row.domain = visible(row.domain)
        click.echo(render_text(matrix))
