"""Read models shared by the CLI and the HTTP API, so both show the same thing.

Each function reads the store, judges at an explicit ``now`` and returns JSON-ready values.
The CLI prints them locally; the API serves them; ``--server`` CLI calls fetch them over HTTP
and print them with the same renderer. Subjects are included only when asked for.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mailwatch.core.durations import format_seconds
from mailwatch.core.judgement import Judgement, MessageFilter, judge, urgency
from mailwatch.core.model import StoredMessage
from mailwatch.core.redaction import mask_addresses
from mailwatch.store.listing import Cursor, Page
from mailwatch.store.rows import ScanRecord
from mailwatch.store.shape import ShapeFilter

if TYPE_CHECKING:  # the read commands (stuck, check) import this module: keep it light
    from mailwatch.core.classify import Classifier
    from mailwatch.core.shape import Shape
    from mailwatch.store import Store

__all__ = [
    "MessageFilter", "ShapeFilter", "alerts", "decode_cursor", "encode_cursor", "judged",
    "message", "messages", "messages_page", "near_misses", "scans", "shape",
]  # fmt: skip

ALERT_ORDER = ("firing", "acknowledged", "pending", "resolved", "inactive")
"""Alert statuses (``AlertStatus`` values), most urgent first."""


class MessageLister(Protocol):
    """A store, or a read-only reader of one (:class:`mailwatch.store.listing.MessageReader`)."""

    def list_messages(
        self, now: datetime, since: datetime, wanted: MessageFilter
    ) -> tuple[list[StoredMessage], int]: ...


class ScanReader(Protocol):
    """A store, or a read-only view of one (:class:`mailwatch.store.listing.StoreView`)."""

    def last_scans(self) -> dict[str, ScanRecord]: ...


class ShapeReader(Protocol):
    """A store, or a read-only reader of one, that aggregates the qshape matrix in SQL."""

    def shape_cells(
        self, now: datetime, wanted: ShapeFilter
    ) -> list[tuple[str, int, int, int]]: ...


def shape(store: ShapeReader, now: datetime, wanted: ShapeFilter) -> Shape:
    """The qshape matrix (domain by age) of the queued messages ``wanted`` selects, P1 first."""
    from mailwatch.core.shape import build_shape

    return build_shape(
        store.shape_cells(now, wanted), buckets=wanted.buckets, tick_minutes=wanted.tick_minutes,
        counting="messages" if wanted.messages else "recipients",
    )  # fmt: skip


def judged(
    store: MessageLister, now: datetime, wanted: MessageFilter, *, undeliverable_for: float
) -> tuple[list[Judgement], int]:
    """Matching messages judged at ``now``, most urgent first, and how many matched in all.

    The store selects and pages in SQL (the judgement's SQL form); the page is judged by the
    pure function. ``stuck``, ``check`` and the API all come through here.
    """
    since = now - timedelta(seconds=undeliverable_for)
    page, total = store.list_messages(now, since, wanted)
    rows = sorted((judge(m, now, since) for m in page), key=urgency)
    if wanted.stuck_only:
        rows = [r for r in rows if r.stuck]  # the SQL form agrees (tested): a guard, not a filter
    return rows, total


def messages(
    store: MessageLister,
    now: datetime,
    wanted: MessageFilter,
    *,
    undeliverable_for: float,
    show_subject: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Matching messages as JSON items, most urgent first, and how many matched before paging."""
    rows, total = judged(store, now, wanted, undeliverable_for=undeliverable_for)
    return [stuck_json(r, show_subject=show_subject) for r in rows], total


class PageLister(Protocol):
    """A store, or a read-only reader of one, that pages with a cursor (keyset paging)."""

    def list_page(
        self, now: datetime, since: datetime, wanted: MessageFilter, after: Cursor | None
    ) -> Page: ...


def messages_page(
    store: PageLister,
    now: datetime,
    wanted: MessageFilter,
    after: Cursor | None,
    *,
    undeliverable_for: float,
) -> tuple[list[dict[str, Any]], int, str | None]:
    """:func:`messages` after ``after`` (``None``: at the offset); the next page's cursor."""
    since = now - timedelta(seconds=undeliverable_for)
    page = store.list_page(now, since, wanted, after)
    rows = sorted((judge(m, now, since) for m in page.messages), key=urgency)
    if wanted.stuck_only:
        rows = [r for r in rows if r.stuck]  # as in judged(): a guard, not a filter
    following = None if page.after is None else encode_cursor(page.after)
    return [stuck_json(r) for r in rows], page.total, following


def encode_cursor(after: Cursor) -> str:
    """An opaque, URL-safe cursor for ``after``."""
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The place a cursor from :func:`encode_cursor` names (``None``: none given).

    ``ValueError`` if it is not one.
    """
    if text is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise ValueError("not a cursor this server gave") from None
    if not (isinstance(value, list) and len(value) == 4 and value[0] in (0, 1)
            and type(value[1]) is int and type(value[2]) in (int, float)
            and isinstance(value[3], str)):  # fmt: skip
        raise ValueError("not a cursor this server gave")
    return (value[0], value[1], float(value[2]), value[3])


def scans(store: ScanReader, now: datetime) -> list[dict[str, Any]]:
    """The latest scan of each source."""
    return [
        {"source": name, "finished_at": s.finished_at.isoformat(), "ok": s.ok, "error": s.error,
         "age_seconds": round((now - s.finished_at).total_seconds(), 3),
         "warnings": list(s.warnings), "messages": s.messages}
        for name, s in sorted(store.last_scans().items())
    ]  # fmt: skip


def message(
    store: Store, ident: str, now: datetime, *, undeliverable_for: float
) -> list[tuple[str, str]]:
    """Every field of one message (personal data: callers audit the consultation)."""
    since = now - timedelta(seconds=undeliverable_for)
    return message_detail(judge(store.get(ident), now, since), now)


def alerts(store: Store, now: datetime, *, show_all: bool = False) -> dict[str, Any]:
    """Alerts (most urgent first), active silences and the outbox backlog."""
    from mailwatch.alerting.lifecycle import AlertStatus

    silences = store.silences(now)
    states = [s for s in store.alert_states().values()
              if show_all or s.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED,
                                          AlertStatus.PENDING)]  # fmt: skip
    states.sort(key=lambda s: (ALERT_ORDER.index(s.status.value), -s.details.oldest_age_seconds))
    return {
        "alerts": [{
            "id": str(s.key), "rule": s.key.rule, "class": s.key.class_name,
            "source": s.key.source, "status": s.status.value,
            "since": s.since.isoformat() if s.since else None,
            "fired_at": s.fired_at.isoformat() if s.fired_at else None,
            "acked_by": s.acked_by, "count": s.details.count,
            "oldest_age_seconds": s.details.oldest_age_seconds, "ids": list(s.details.ids),
            "silenced": any(x.matches(s.key, now) for x in silences),
        } for s in states],
        "silences": [{"id": x.id, "class": x.class_name, "source": x.source,
                      "ends": x.ends.isoformat(), "reason": x.reason, "by": x.by}
                     for x in silences],
        "outbox_pending": store.outbox_pending(),
    }  # fmt: skip


def stuck_json(row: Judgement, *, show_subject: bool = False) -> dict[str, Any]:
    """One ``mailwatch stuck --json`` item (``queue``: where it is, or its outcome if it left)."""
    m = row.message
    item: dict[str, Any] = {
        "id": m.key,
        "queue_id": m.queue_id,
        "source": m.source,
        "class": m.class_name,
        "priority": str(m.priority),
        "queue": row.state,
        "age_seconds": round(row.age_seconds, 3),
        "age": format_seconds(row.age_seconds),
        "arrival": m.arrival.isoformat(),
        "deadline": m.deadline.isoformat(),
        "stuck": row.stuck,
        "reason": row.reason if show_subject or row.reason is None else mask_addresses(row.reason),
        "reason_category": None if row.category is None else row.category.value,
        "recipient_domains": list(m.recipient_domains),
        "marking": m.marking,
        "status": m.status.value,
        "outcome": m.outcome.value if m.outcome else None,
    }
    if show_subject:
        item["subject"] = m.subject
    return item


def message_detail(judgement: Judgement, now: datetime) -> list[tuple[str, str]]:
    """Every field of one message, labelled, for ``mailwatch show``."""
    m = judgement.message
    age = format_seconds((now - m.arrival).total_seconds())
    reason = judgement.reason
    fields = [
        ("id", m.key),
        ("queue id", m.queue_id),
        ("source", m.source),
        ("status", m.status.value),
        ("queue", judgement.state if judgement.state == m.queue
         else f"{judgement.state} (last queue: {m.queue})"),
        ("class", f"{m.class_name} ({m.priority}) by {m.rule}"),
        ("marking", m.marking or "-"),
        ("arrival", f"{m.arrival.isoformat()} ({age} ago)"),
        ("deadline", m.deadline.isoformat()),
        ("stuck", f"yes: {reason}" if reason is not None else "no"),
        ("reason category", judgement.category.value if judgement.category else "-"),
        ("first seen", m.first_seen.isoformat()),
        ("last seen", m.last_seen.isoformat() if m.last_seen else "-"),
        ("left queue", m.left_at.isoformat() if m.left_at else "-"),
        ("outcome", f"{m.outcome.value} {m.dsn or ''} {m.outcome_text or ''}".strip()
         if m.outcome else "-"),
        ("delivery delay", format_seconds(m.delivery_delay) if m.delivery_delay else "-"),
        ("size", f"{m.size} bytes"),
        ("sender", m.sender or "<>"),
        ("subject", m.subject),
    ]  # fmt: skip
    fields += [("recipient", f"{r.address}  {r.delay_reason or ''}".rstrip()) for r in m.recipients]
    fields += [(f"header {name}", value) for name, value in m.headers.items]
    return fields


NEAR_MISS_LIMIT = 20_000
"""At most this many recent default-class messages are read for a near-miss report."""


class RecentReader(Protocol):
    """A store, or a read-only reader of one, that lists recent messages of a class."""

    def recent_of_class(
        self, class_name: str, since: datetime, limit: int
    ) -> list[StoredMessage]: ...


def near_misses(
    store: RecentReader,
    classifier: Classifier,
    now: datetime,
    *,
    window_seconds: float,
    show_subjects: bool = False,
) -> dict[str, Any]:
    """Recent default-class messages with P1 vocabulary, grouped by term (counts by default).

    Messages are classified again with the rules as configured now: what they would match
    today is not a near miss.
    """
    from mailwatch.core.nearmiss import near_misses as find

    since = now - timedelta(seconds=window_seconds)
    stored = store.recent_of_class(classifier.default.name, since, NEAR_MISS_LIMIT)
    found = find(classifier, (m.as_message() for m in stored), show_subjects=show_subjects)
    terms = []
    for miss in found:
        item: dict[str, Any] = {"term": miss.term, "classes": list(miss.classes),
                                "count": miss.count, "set_aside": miss.set_aside}  # fmt: skip
        if show_subjects:
            item["subjects"] = miss.subjects
        terms.append(item)
    return {"since": since.isoformat(), "read": len(stored), "limit": NEAR_MISS_LIMIT,
            "terms": terms}  # fmt: skip
