"""Commands that look: ``stuck``, ``show``, ``classify``, ``classes``, ``check`` (Nagios)."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from mailwatch.app import queries
from mailwatch.cli.common import (
    Context,
    api_client,
    duration_option,
    fail,
    guard,
    pass_ctx,
    priority_option,
    remote_options,
    utc_now,
)
from mailwatch.cli.render import json_chunks, scans_lines, stuck_table, table
from mailwatch.cli.terminal import visible
from mailwatch.core.model import Priority

NAGIOS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
DEFAULT_LIMIT = 50
"""Rows ``stuck`` shows by default: an on-call screen, not a dump (``--limit 0``: every one)."""
REMOTE_MAX = 1000
"""The API's largest page (``--server``)."""


def _nagios_exit(code: int, text: str, perfdata: list[str]) -> None:
    click.echo(
        f"MAILWATCH {NAGIOS[code]} - {text}" + (f" | {' '.join(perfdata)}" if perfdata else "")
    )
    sys.exit(code)


@click.command()
@click.option("--class", "class_name", help="Only this class.")
@click.option("--priority", callback=priority_option, help="Only this priority (P1…P4).")
@click.option(
    "--older-than", callback=duration_option, help="Only messages older than this (e.g. 30m)."
)
@click.option("--source", help="Only this source.")
@click.option(
    "--all", "include_all", is_flag=True, help="List queued messages that are not stuck too."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, show_default=True,
    help="Show at most this many, most urgent first (0: every one).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show-subject", is_flag=True, help="Show subjects (personal data: use with care).")
@click.option("--fleet", "from_fleet", is_flag=True, help="Every agent's, from the fleet database.")
@remote_options
@pass_ctx
@guard
def stuck(
    ctx: Context,
    class_name: str | None,
    priority: Priority | None,
    older_than: float | None,
    source: str | None,
    include_all: bool,
    limit: int,
    as_json: bool,
    show_subject: bool,
    from_fleet: bool,
    server: str | None,
    token_file: Path | None,
) -> None:
    """List stuck messages, most urgent first (local store, --server, or --fleet).

    Pages by default (--limit): the selection, count and order are SQLite's, and only the rows
    shown are decoded, so the answer is quick however large the backlog; a footer (on stderr
    with --json) says how many more matched.
    """
    if from_fleet:
        if server is not None:
            fail("--fleet reads the fleet database: use GET /api/v1/fleet/messages remotely", 2)
        from mailwatch.cli.fleet import stuck_fleet  # only --fleet loads the database driver

        wanted = queries.MessageFilter(
            not include_all, class_name, priority, older_than, source, limit or None
        )
        stuck_fleet(ctx, wanted, as_json=as_json, show_subject=show_subject)
        return
    items, total, scans = _select(
        ctx, server, token_file, include_all=include_all, class_name=class_name,
        priority=priority, older_than=older_than, source=source, limit=limit,
        show_subject=show_subject,
    )  # fmt: skip
    more = max(total - len(items), 0)
    footer = f"{more} more; use --limit N, or --limit 0 for every one" if more else None
    if as_json:
        for chunk in json_chunks(items):
            click.echo(chunk, nl=False)
        if footer:
            click.echo(footer, err=True)
        return
    for line in scans_lines(scans):
        click.echo(line)
    if not scans:
        click.echo("no scan recorded yet: run `mailwatch scan` first")
    if items:
        click.echo(stuck_table(items, show_subject=show_subject))
        if footer:
            click.echo(footer)
    else:
        click.echo("nothing stuck" if not include_all else "nothing queued")


def _select(
    ctx: Context,
    server: str | None,
    token_file: Path | None,
    *,
    include_all: bool,
    class_name: str | None,
    priority: Priority | None,
    older_than: float | None,
    source: str | None,
    limit: int,
    show_subject: bool,
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """The page of messages ``stuck`` shows, how many matched, and the last scans."""
    client = api_client(server, token_file)
    if client is not None:
        if show_subject:
            fail("--show-subject: use `mailwatch show ID` against the server (it is audited)", 2)
        params = {
            "stuck": "false" if include_all else "true",
            "class": class_name or "",
            "priority": str(priority) if priority else "",
            "source": source or "",
            "older_than": f"{older_than}s" if older_than is not None else "",
            "limit": str(min(limit, REMOTE_MAX) if limit else REMOTE_MAX),
        }
        page = client.request("GET", "/api/v1/messages", params=params)
        items, total = page["items"], int(page.get("total", len(page["items"])))
        return items, total, client.request("GET", "/api/v1/summary")["scans"]
    if class_name is not None and class_name not in ctx.settings.all_classes():
        fail(f"--class: unknown class {class_name!r}", 2)  # the only filter needing the model
    wanted = queries.MessageFilter(
        not include_all, class_name, priority, older_than, source, limit or None
    )
    now = utc_now()
    with ctx.view() as store:
        items, total = queries.messages(
            store, now, wanted, show_subject=show_subject,
            undeliverable_for=ctx.essentials.undeliverable_for,
        )  # fmt: skip
        return items, total, queries.scans(store, now)


@click.command()
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@remote_options
@pass_ctx
@guard
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
        now = utc_now()
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


@click.command()
@click.argument("eml", type=click.File("rb"), required=False)
@click.option("--source", default="cli", help="Source name to classify as.")
@click.option("--queue", default="deferred", help="Queue name to classify as.")
@click.option(
    "--evaluate", "evaluate_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Measure the rules on DIR: .eml files and labels.tsv (file, class[, priority]).",
)  # fmt: skip
@click.option(
    "--near-misses", is_flag=True,
    help="Recent general messages holding P1 vocabulary, grouped by term (counts only).",
)  # fmt: skip
@click.option("--since", callback=duration_option, default="7d", show_default=True,
              help="--near-misses: messages first seen this recently.")  # fmt: skip
@click.option("--show-subject", is_flag=True,
              help="--near-misses: show subjects too (personal data: audited).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@remote_options
@pass_ctx
@guard
def classify(
    ctx: Context, eml: Any, source: str, queue: str, evaluate_dir: Path | None,
    near_misses: bool, since: float, show_subject: bool, as_json: bool,
    server: str | None, token_file: Path | None,
) -> None:  # fmt: skip
    """Classify a message file (or - for stdin) and explain which rule matched.

    With --evaluate DIR: per-class precision and recall, the confusion matrix, P1 recall,
    the false-P1 rate and every miss with the rule that fired, on labelled mail.
    With --near-misses: what the rules may be missing in the store's recent mail.
    """
    if near_misses:
        from mailwatch.cli import classify_tools

        client = api_client(server, token_file)
        report = classify_tools.near_miss_report(ctx, client, since, show_subject)
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            click.echo("\n".join(classify_tools.near_miss_lines(report)))
        return
    if evaluate_dir is not None:
        from mailwatch.cli import classify_tools

        try:
            measured = classify_tools.evaluate_directory(ctx.settings.classifier(), evaluate_dir)
        except ValueError as exc:
            fail(str(exc), 2)
        if as_json:
            click.echo(json.dumps(classify_tools.evaluation_json(measured), indent=2))
        else:
            click.echo("\n".join(classify_tools.evaluation_lines(measured)))
        return
    if eml is None:
        fail("classify: give an EML file (or -), or --evaluate DIR", 2)
    from mailwatch.parsing.eml import message_from_bytes

    message = message_from_bytes(eml.read(), source=source, queue=queue)
    result, notes = ctx.settings.classifier().explain(message)
    for label, value in [
        ("class", result.name),
        ("priority", str(result.priority)),
        ("marking", message.marking or "-"),
        ("rule", result.rule),
        ("matched on", result.matched_on or "-"),
        ("subject", message.subject),
        *(("set aside", note) for note in notes),
    ]:
        click.echo(f"{label:<11} {visible(value)}")


@click.command("classes")
@pass_ctx
def list_classes(ctx: Context) -> None:
    """List the configured classes, most urgent first."""
    classifier = ctx.settings.classifier()
    click.echo(table(
        ["CLASS", "PRI", "STUCK AFTER", "RULES", "DESCRIPTION"],
        [[c.name, str(c.priority), str(c.stuck_after), str(len(c.rules)), c.description]
         for c in classifier.all_classes],
    ))  # fmt: skip


@click.command()
@click.option("--class", "classes", multiple=True, help="Only these classes (repeatable).")
@click.option("--priority", "priorities", multiple=True, help="Only these priorities, e.g. P1.")
@click.option("--warn", type=int, default=1, show_default=True, help="WARNING at this many stuck.")
@click.option("--crit", type=int, default=1, show_default=True, help="CRITICAL at this many stuck.")
@click.option("--stale", callback=duration_option, default="5m", show_default=True,
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
        since = now - timedelta(seconds=ctx.essentials.undeliverable_for)
        with ctx.view() as store:
            scans = store.last_scans()
            stuck = store.count_stuck(now, since)  # the judgement's SQL form: counted in SQL
    except Exception as exc:  # noqa: BLE001 - a monitoring check must answer UNKNOWN, not crash
        _nagios_exit(3, f"cannot read mailwatch state: {exc}", [])
    if not scans:
        _nagios_exit(3, "no scan recorded yet", [])
    old = [n for n, s in scans.items() if not s.ok or (now - s.finished_at).total_seconds() > stale]
    counts: dict[str, int] = {}
    for (name, priority), count in stuck.items():
        if (not classes or name in classes) and (not wanted or priority in wanted):
            counts[name] = counts.get(name, 0) + count
    names = list(classes) or sorted(counts)
    perf = [f"{n}_stuck={counts.get(n, 0)};{warn};{crit};0" for n in names]
    total = sum(counts.values())
    detail = ", ".join(f"{n}={c}" for n, c in sorted(counts.items())) or "none"
    if old:
        _nagios_exit(
            3, f"{total} stuck ({detail}); stale or failing sources: {', '.join(old)}", perf
        )
    code = 2 if total >= crit else 1 if total >= warn else 0
    _nagios_exit(code, f"{total} stuck ({detail})", perf)
