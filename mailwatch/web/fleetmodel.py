"""The overview's "Fleet" section as plain values (pure: no I/O, an explicit ``now``).

Built from what :mod:`mailwatch.web.fleetpanel` read from the central store: the fleet's
messages already judged by the core judgement (:func:`mailwatch.app.queries.judged`) and the
sources' status items (:func:`mailwatch.app.fleet_queries.status`). Per class (and message
priority), across every agent: stuck of waiting and the oldest since, P1 first. Per source:
its state and heartbeat age; a stale source is **unknown** and its stuck count is not known,
never "0". No subjects, no addresses: class names, agent and source names, counts and times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from mailwatch.core.durations import format_seconds
from mailwatch.core.judgement import Judgement
from mailwatch.web.pagemodel import ClassInfo, class_info, local

STATE_WORDS = {"ok": ("\u2713", "ok"), "failing": ("\u26a0", "FAILING"),
               "unknown": ("?", "UNKNOWN")}  # fmt: skip
"""Each source state's icon and word: colour is never the only signal."""


@dataclass(frozen=True, slots=True)
class FleetClass:
    """One class at one priority, summed over every agent."""

    name: str
    title: str
    priority: str
    stuck: int
    waiting: int
    oldest: str


@dataclass(frozen=True, slots=True)
class FleetSource:
    """One agent's source as its heartbeat says."""

    agent: str
    source: str
    state: str
    icon: str
    word: str
    heartbeat: str
    stuck: str
    """A count, or ``not known`` when the source is unknown."""


@dataclass(frozen=True, slots=True)
class FleetView:
    """The section: either the fleet's answer, or why there is none."""

    classes: list[FleetClass] = field(default_factory=list)
    sources: list[FleetSource] = field(default_factory=list)
    partial: str | None = None
    """Set when only the most urgent part of the fleet's messages was read."""
    down: str | None = None
    """Set when the database could not be read: the section says so instead of counting."""

    @property
    def unknown(self) -> int:
        """How many sources are unknown (their stuck messages are not counted above)."""
        return sum(1 for s in self.sources if s.state == "unknown")


def unreachable(
    since: datetime, reason: str, zone: tzinfo, now: datetime, *, word: str | None = None
) -> FleetView:
    """The section while the database cannot be read: since when, and why (no counts at all)."""
    ago = format_seconds(max((now - since).total_seconds(), 0.0))
    return FleetView(down=f"fleet database {word or 'unreachable'} since {local(since, zone, now)}"
                          f" ({ago} ago): {reason}")  # fmt: skip


def _classes(
    judgements: Sequence[Judgement], infos: Mapping[str, ClassInfo], zone: tzinfo, now: datetime
) -> list[FleetClass]:
    groups: dict[tuple[str, str], list[Judgement]] = {}
    for j in judgements:
        if j.state in ("sent", "bounced", "expired", "left") and not j.stuck:
            continue
        groups.setdefault((j.message.class_name, str(j.message.priority)), []).append(j)
    rows = []
    for (name, priority), group in groups.items():
        age = max(j.age_seconds for j in group)
        oldest = f"{local(now - timedelta(seconds=age), zone, now)} ({format_seconds(age)} ago)"
        title = (infos.get(name) or class_info(name, "")).title
        rows.append(FleetClass(name, title, priority, sum(j.stuck for j in group), len(group),
                               oldest))  # fmt: skip
    return sorted(rows, key=lambda c: (c.priority != "P1", -c.stuck, c.priority, c.name))


def _sources(items: Sequence[Mapping[str, Any]]) -> list[FleetSource]:
    rows = []
    for item in items:
        icon, word = STATE_WORDS.get(item["state"], ("?", item["state"].upper()))
        stuck = (
            "not known" if item["state"] == "unknown" or item["stuck"] is None else item["stuck"]
        )
        rows.append(FleetSource(
            agent=item["agent"], source=item["source"], state=item["state"], icon=icon,
            word=word, heartbeat=f"{format_seconds(item['heartbeat_age_seconds'])} ago",
            stuck=str(stuck),
        ))  # fmt: skip
    return rows


def fleet_view(
    judgements: Sequence[Judgement],
    total: int,
    status_items: Sequence[Mapping[str, Any]],
    infos: Mapping[str, ClassInfo],
    zone: tzinfo,
    now: datetime,
) -> FleetView:
    """The section from the judged fleet messages (``total`` matched in all) and the sources."""
    partial = None
    if total > len(judgements):
        partial = (f"counted from the {len(judgements)} most urgent of {total} messages"
                   " (every stuck one first)")  # fmt: skip
    return FleetView(_classes(judgements, infos, zone, now), _sources(status_items), partial)
