"""Read models of the fleet, shared by the CLI (``stuck --fleet``, ``fleet status``) and the API.

Messages come through :func:`mailwatch.app.queries.messages` exactly like the local ones (the
same filters, JSON items and judgement); only the reader differs. A source whose heartbeat is
older than ``stale_after`` is ``unknown`` and its stuck count ``None``: never "0 stuck".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mailwatch.app import queries
from mailwatch.core.durations import format_seconds
from mailwatch.core.redaction import mask_addresses
from mailwatch.fleet.reader import FleetReader


def status(
    reader: FleetReader, now: datetime, *, stale_after: float, undeliverable_for: float
) -> list[dict[str, Any]]:
    """Every agent's every source: state (ok, failing, unknown), heartbeat age, stuck count."""
    since = now - timedelta(seconds=undeliverable_for)
    items = []
    for beat in reader.sources(now, since):
        state = beat.state(now, stale_after)
        items.append({
            "agent": beat.agent, "source": beat.source, "state": state,
            "last_scan": beat.last_scan.isoformat(),
            "heartbeat_age_seconds": round(beat.age(now), 3),
            "error": None if beat.error is None else mask_addresses(beat.error),
            "error_kind": beat.error_kind,
            "messages": None if state == "unknown" else beat.messages,
            "stuck": None if state == "unknown" else beat.stuck,
        })  # fmt: skip
    return items


def status_lines(items: list[dict[str, Any]]) -> list[str]:
    """One line per source, as ``stuck --fleet`` and ``fleet status`` print them."""
    lines = []
    for item in items:
        ago = format_seconds(item["heartbeat_age_seconds"])
        where = f"{item['agent']}/{item['source']}"
        if item["state"] == "unknown":
            lines.append(f"source {where}: UNKNOWN (last heartbeat {ago} ago; stuck not known)")
        elif item["state"] == "failing":
            lines.append(f"source {where}: last heartbeat {ago} ago, FAILED: {item['error']}")
        else:
            lines.append(
                f"source {where}: last heartbeat {ago} ago, ok, {item['messages']} queued,"
                f" {item['stuck']} stuck"
            )
    return lines


def messages(
    reader: FleetReader,
    now: datetime,
    wanted: queries.MessageFilter,
    *,
    undeliverable_for: float,
    show_subject: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """The fleet's matching messages as ``stuck --json`` items (source: ``agent/source``)."""
    return queries.messages(
        reader, now, wanted, undeliverable_for=undeliverable_for, show_subject=show_subject
    )
