"""Turn computed values into what people read at a terminal (text tables, sparklines).

The JSON shapes shared with the API are read models (:mod:`mailwatch.app.queries`). Pure
functions of their inputs; subjects and addresses appear only when the caller asks for
them (``show_subject``), recipient *domains* otherwise. Whether a message is stuck, and why, is
never decided here: that is :mod:`mailwatch.core.judgement`, and this module only renders it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailwatch.cli.terminal import visible
from mailwatch.core.durations import format_seconds
from mailwatch.core.model import Priority

if TYPE_CHECKING:  # core.backlog imports the classifier (re2): `stuck` needs neither
    from mailwatch.core.backlog import ClassCount


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table (no colour: it is pasted into tickets).

    Cells are untrusted text: control and bidi characters are shown escaped (:func:`visible`).
    """
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def json_chunks(items: Iterable[Any]) -> Iterator[str]:
    """A JSON list written item by item (the same text as ``json.dumps(items, indent=2)``).

    A large listing is never one string in memory: each item is encoded and written in turn.
    """
    first = True
    for item in items:
        body = json.dumps(item, indent=2).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + body
        first = False
    yield "[]\n" if first else "\n]\n"


def _clip(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def stuck_table(items: Sequence[dict[str, Any]], *, show_subject: bool = False) -> str:
    """The ``mailwatch stuck`` table, from :func:`stuck_json` items (local or from the API)."""
    headers = ["QUEUE ID", "CLASS", "PRI", "AGE", "QUEUE", "RECIPIENT DOMAINS", "WHY", "REASON"]
    if show_subject:
        headers.append("SUBJECT")
    body = []
    for item in items:
        cells = [
            item["queue_id"], item["class"], item["priority"], item["age"], item["queue"],
            ",".join(item["recipient_domains"]) or "-", item.get("reason_category") or "-",
            _clip(item["reason"] or "-"),
        ]  # fmt: skip
        if show_subject:
            cells.append(_clip(item.get("subject", ""), 50))
        body.append(cells)
    return table(headers, body)


def counts_table(counts: Sequence[ClassCount]) -> str:
    """Per-class totals, stuck counts and oldest ages (``mailwatch scan``)."""
    rows = [
        [c.source, c.name, str(c.priority), str(c.total), str(c.stuck),
         format_seconds(c.oldest_age_seconds) if c.total else "-"]
        for c in sorted(counts, key=lambda c: (c.source, c.priority, -c.stuck, c.name))
    ]  # fmt: skip
    return table(["SOURCE", "CLASS", "PRI", "TOTAL", "STUCK", "OLDEST"], rows)


def scans_lines(scans: Sequence[dict[str, Any]]) -> list[str]:
    """One line per source: when it was last scanned and whether that worked."""
    lines = []
    for scan in scans:
        state = "ok" if scan["ok"] else f"FAILED: {scan['error']}"
        if scan["warnings"]:
            state += "; WARNING: " + "; ".join(scan["warnings"])
        ago = format_seconds(scan["age_seconds"])
        lines.append(visible(f"source {scan['source']}: last scan {ago} ago, {state}"))
    return lines


def priority_filter(text: str | None) -> Priority | None:
    """Parse a ``--priority`` option value."""
    return None if text is None else Priority.parse(text)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """A one-line chart of ``values`` (zeros stay at the floor; an empty list is empty)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, round(v / top * (len(SPARKS) - 1)))] for v in values)


def bucketed(points: Sequence[tuple[datetime, int]], start: datetime, end: datetime,
             buckets: int) -> list[float]:  # fmt: skip
    """The maximum backlog seen in each of ``buckets`` equal slices of [start, end]."""
    width = (end - start).total_seconds() / buckets
    out = [0.0] * buckets
    for moment, value in points:
        index = int((moment - start).total_seconds() // width) if width > 0 else 0
        if 0 <= index < buckets:
            out[index] = max(out[index], float(value))
    return out
