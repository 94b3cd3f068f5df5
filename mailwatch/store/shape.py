"""The qshape matrix aggregated in SQL (``mailwatch shape``, ``GET /api/v1/shape``).

One query over the queued messages: each stored recipient (``json_each`` of the recipients
column) is grouped by its qshape domain (:func:`mailwatch.core.shape.qshape_domain`, registered
as the SQL function ``mw_qshape_domain``), its message's priority and its age bucket (a
``CASE`` on the thresholds of :func:`mailwatch.core.shape.bucket_bounds`). Python only folds
the few hundred resulting cells into rows (:func:`mailwatch.core.shape.build_shape`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailwatch.core.model import Priority, Status
from mailwatch.core.shape import BUCKETS, TICK_MINUTES, bucket_bounds, qshape_domain
from mailwatch.store.rows import ts


@dataclass(frozen=True, slots=True)
class ShapeFilter:
    """What ``mailwatch shape`` aggregates: queued messages, optionally narrowed."""

    queues: Sequence[str] = ()
    """Only these queues (``deferred``, ``active``, ``hold``…); empty: every queue."""
    class_name: str | None = None
    priority: Priority | None = None
    source: str | None = None
    messages: bool = False
    """Count messages per domain instead of recipients (qshape counts recipients)."""
    tick_minutes: int = TICK_MINUTES
    buckets: int = BUCKETS


def _bucket_sql(wanted: ShapeFilter) -> str:
    bounds = bucket_bounds(wanted.tick_minutes, wanted.buckets)
    whens = " ".join(f"WHEN :now - arrival < {top!r} THEN {i}" for i, top in enumerate(bounds, 1))
    return f"CASE {whens} ELSE {wanted.buckets} END"


def shape_cells(
    db: sqlite3.Connection, now: datetime, wanted: ShapeFilter
) -> list[tuple[str, int, int, int]]:
    """``(domain, priority, bucket, count)`` for the queued messages ``wanted`` selects."""
    db.create_function("mw_qshape_domain", 1, qshape_domain, deterministic=True)
    clauses = ["m.status = :queued"]
    args: dict[str, Any] = {"now": ts(now), "queued": Status.QUEUED.value}
    if wanted.queues:
        names = {f"q{i}": q for i, q in enumerate(wanted.queues)}
        clauses.append(f"m.queue IN ({', '.join(':' + k for k in names)})")
        args |= names
    if wanted.class_name is not None:
        clauses.append("m.class = :class")
        args["class"] = wanted.class_name
    if wanted.priority is not None:
        clauses.append("m.priority = :priority")
        args["priority"] = int(wanted.priority)
    if wanted.source is not None:
        clauses.append("m.source = :source")
        args["source"] = wanted.source
    counted = "count(DISTINCT m.key)" if wanted.messages else "count(*)"
    sql = (
        f"SELECT domain, priority, bucket, {counted} FROM ("
        "SELECT m.key, m.priority,"
        " mw_qshape_domain(json_extract(r.value, '$[0]')) AS domain,"
        f" {_bucket_sql(wanted)} AS bucket"
        f" FROM messages AS m, json_each(m.recipients) AS r WHERE {' AND '.join(clauses)}"
        ") AS m GROUP BY domain, priority, bucket"
    )
    return [(str(d), int(p), int(b), int(n)) for d, p, b, n in db.execute(sql, args)]
