"""What the duty manager's page shows, as plain values (pure: no I/O, an explicit ``now``).

One :class:`Tile` per class (and per raised message priority in use): human name and
description, count stuck of waiting, the oldest since (local time), why (reason categories
and their shares), where (sources, queues, top destination domains), the alert state, the
runbook link, drain rate and clear-ETA, and for P1 classes a 24-hour chart. P1 tiles come
first, then by urgency. The templates only lay these values out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from mailwatch.alerting.lifecycle import AlertState, AlertStatus, Silence
from mailwatch.core.backlog import DrainEstimate
from mailwatch.core.durations import format_seconds
from mailwatch.core.judgement import Judgement
from mailwatch.web.charts import Trend, trend_svg

AMBER_FRACTION = 0.5
"""A class is "at risk" (amber) when its oldest message has used half its SLA; stuck is red."""
TREND_HOURS = 24
TOP_DOMAINS = 3
STATES = {"red": ("stuck", "\u26a0"), "amber": ("at risk", "\u25d4"), "green": ("ok", "\u2713")}
"""Each state's word and icon: colour is never the only signal."""
STATE_ORDER = {"red": 0, "amber": 1, "green": 2}
RUNBOOK_ANCHORS = {"P1": "mailwatchp1stuck"}
DEFAULT_ANCHOR = "mailwatcholdestoversla"

Points = Sequence[tuple[datetime, int, int]]
"""(time, waiting, stuck) per history step."""


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """A class as people know it."""

    title: str
    description: str


@dataclass(frozen=True, slots=True)
class AlertView:
    """One open alert of a class, as the page says it."""

    id: str
    rule: str
    source: str
    """The source the alert is about (two sources' alerts of one rule read apart)."""
    status: str
    text: str
    note: str | None
    can_ack: bool


@dataclass(frozen=True, slots=True)
class Share:
    """One reason category and its share of a class's stuck messages."""

    category: str
    count: int
    percent: int


@dataclass(frozen=True, slots=True)
class Tile:
    """One class (at one message priority) on the page."""

    name: str
    title: str
    description: str
    priority: str
    state: str
    word: str
    icon: str
    stuck: int
    total: int
    oldest: str
    sla: str
    eta: str
    drain: str
    runbook: str
    reasons: list[Share] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    domains: list[tuple[str, int]] = field(default_factory=list)
    alerts: list[AlertView] = field(default_factory=list)
    silenced_until: str | None = None
    chart: str | None = None


def class_info(name: str, description: str) -> ClassInfo:
    """The name people use: the description up to its first ``:`` or ``;`` when short."""
    for mark in (":", ";"):
        head = description.split(mark, 1)[0].strip()
        if mark in description and 0 < len(head) <= 48:
            return ClassInfo(head, description)
    return ClassInfo(name.replace("_", " ").capitalize(), description)


def local(moment: datetime, zone: tzinfo, now: datetime) -> str:
    """``14:02`` today, ``Tue 3 Mar 14:02`` another day (in ``zone``, with its abbreviation)."""
    here, today = moment.astimezone(zone), now.astimezone(zone)
    clock = here.strftime("%H:%M %Z").strip()
    return clock if here.date() == today.date() else f"{here:%a} {here.day} {here:%b} {clock}"


def tile_state(item: Mapping[str, Any]) -> str:
    """``red`` when anything is stuck, ``amber`` past half the SLA, else ``green``."""
    if item["stuck"]:
        return "red"
    sla = item.get("sla_seconds") or 0
    if sla and item["oldest_age_seconds"] >= AMBER_FRACTION * sla:
        return "amber"
    return "green"


def combined(
    trends: Mapping[tuple[str, str], Points], name: str, step: float
) -> list[tuple[datetime, int, int]]:
    """One class's points summed over its sources, per history step (oldest first)."""
    steps: dict[int, list[Any]] = {}
    for (_, cls), points in trends.items():
        if cls != name:
            continue
        for at, waiting, stuck in points:
            key = math.floor(at.timestamp() / step)
            row = steps.setdefault(key, [at, 0, 0])
            row[0], row[1], row[2] = max(row[0], at), row[1] + waiting, row[2] + stuck
    return [(r[0], r[1], r[2]) for _, r in sorted(steps.items())]


def drain_text(
    estimate: DrainEstimate | None, now: datetime, zone: tzinfo
) -> tuple[str, str, float | None]:
    """(ETA text, drain text, ETA seconds from ``now``) of a class's drain estimate.

    The estimate is the metrics snapshot's (:attr:`MetricsSnapshot.class_drain`, the same
    :func:`mailwatch.core.backlog.drain_estimate` as ``mailwatch_backlog_clear_eta_seconds``,
    over the same window of ``drain_halflife``); "not enough data yet" until it has settled
    (three scans over a half-life). The time left is counted to its predicted clear time, so
    it does not age between scans.
    """
    if estimate is None or estimate.at is None:
        return "not enough data yet", "not enough data yet", None
    if estimate.backlog == 0:
        return "nothing waiting", "-", None
    if not estimate.settled:
        return "not enough data yet", "not enough data yet", None
    per_hour = estimate.rate * 3600
    drain = f"{per_hour:.0f} an hour" if per_hour >= 0 else f"growing {-per_hour:.0f} an hour"
    if estimate.clear_at is None:
        return "not clearing at this pace", drain, None
    eta = max(0.0, (estimate.clear_at - now).total_seconds())
    clear = local(estimate.clear_at, zone, now)
    return f"about {format_seconds(eta)} (clear ~{clear})", drain, eta


def _reasons(rows: Sequence[Judgement]) -> list[Share]:
    counts = Counter(r.category.value if r.category else "unknown" for r in rows if r.stuck)
    total = sum(counts.values())
    return [Share(cat, n, round(100 * n / total)) for cat, n in counts.most_common()]


def _alerts(states: Iterable[AlertState], zone: tzinfo, now: datetime) -> list[AlertView]:
    views = []
    for s in sorted(states, key=lambda s: (s.status is not AlertStatus.FIRING, str(s.key))):
        if s.status is AlertStatus.FIRING:
            since = local(s.fired_at, zone, now) if s.fired_at else "?"
            text = f"firing since {since}"
        elif s.status is AlertStatus.ACKNOWLEDGED:
            when = local(s.acked_at, zone, now) if s.acked_at else "?"
            text = f"acknowledged by {s.acked_by or '?'} at {when}"
        else:
            continue
        views.append(AlertView(str(s.key), s.key.rule, s.key.source, s.status.value, text,
                               s.ack_note,
                               s.status is AlertStatus.FIRING))  # fmt: skip
    return views


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the page is built from (read by the handlers; no personal data)."""

    summary: Mapping[str, Any]
    now: datetime
    zone: tzinfo
    runbook_base_url: str
    classes: Mapping[str, ClassInfo] = field(default_factory=dict)
    judgements: Sequence[Judgement] = ()
    """The stuck messages (their categories, sources, queues and domains; never subjects)."""
    alerts: Sequence[AlertState] = ()
    silences: Sequence[Silence] = ()
    trends: Mapping[tuple[str, str], Points] = field(default_factory=dict)
    step_seconds: float = 300.0
    drain: Mapping[str, DrainEstimate] = field(default_factory=dict)
    """Each class's drain estimate across its sources (the snapshot's ``class_drain``)."""


def tile(item: Mapping[str, Any], inputs: Inputs) -> Tile:
    """One class's tile from its summary item and the page's inputs."""
    name, priority, now, zone = item["class"], item["priority"], inputs.now, inputs.zone
    info = inputs.classes.get(name) or class_info(name, "")
    rows = [j for j in inputs.judgements if j.message.class_name == name
            and str(j.message.priority) == priority]  # fmt: skip
    state = tile_state(item)
    word, icon = STATES[state]
    points = combined(inputs.trends, name, inputs.step_seconds)
    eta, drain, eta_seconds = drain_text(inputs.drain.get(name), now, zone)
    oldest = "-"
    if item["total"] or rows:
        age = max([item["oldest_age_seconds"], *(r.age_seconds for r in rows)])
        oldest = f"{local(now - timedelta(seconds=age), zone, now)} ({format_seconds(age)} ago)"
    domains = Counter(d for r in rows for d in r.message.recipient_domains)
    silence = max((s.ends for s in inputs.silences if s.class_name in (None, name)
                   and s.starts <= now < s.ends), default=None)  # fmt: skip
    anchor = RUNBOOK_ANCHORS.get(priority, DEFAULT_ANCHOR)
    return Tile(
        name=name, title=info.title, description=info.description, priority=priority,
        state=state, word=word, icon=icon, stuck=item["stuck"], total=item["total"],
        oldest=oldest, sla=format_seconds(item["sla_seconds"]) if item.get("sla_seconds") else "-",
        eta=eta, drain=drain, runbook=f"{inputs.runbook_base_url}#{anchor}",
        reasons=_reasons(rows), sources=sorted({r.message.source for r in rows}),
        queues=sorted({r.state for r in rows}), domains=domains.most_common(TOP_DOMAINS),
        alerts=_alerts([a for a in inputs.alerts if a.key.class_name == name], zone, now),
        silenced_until=local(silence, zone, now) if silence else None,
        chart=_chart(info.title, points, now, zone, eta_seconds, eta) if priority == "P1" else None,
    )  # fmt: skip


def _chart(
    title: str, points: Points, now: datetime, zone: tzinfo, eta: float | None, eta_text: str
) -> str:
    start = now - timedelta(hours=TREND_HOURS)
    shown = [p for p in points if p[0] >= start]
    offset = [((at - start).total_seconds(), w, s) for at, w, s in shown]
    return trend_svg(Trend(
        title=f"{title}: waiting and stuck, last {TREND_HOURS} hours",
        window_seconds=TREND_HOURS * 3600.0,
        waiting=[(x, float(w)) for x, w, _ in offset],
        stuck=[(x, float(s)) for x, _, s in offset],
        eta_seconds=eta, start_label=local(start, zone, now), end_label="now",
        eta_label="" if eta is None else eta_text.split("(", 1)[-1].rstrip(")"),
    ))  # fmt: skip


def urgency(t: Tile) -> tuple[bool, int, int, str, str]:
    """P1 first, then stuck before at risk before ok, more stuck first, then by name."""
    return (t.priority != "P1", STATE_ORDER[t.state], -t.stuck, t.priority, t.name)


def tiles(inputs: Inputs) -> list[Tile]:
    """Every class's tile, P1 first, then by urgency."""
    return sorted((tile(item, inputs) for item in inputs.summary["classes"]), key=urgency)
