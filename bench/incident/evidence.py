"""The report's data: the replay's records, Alertmanager's samples and Prometheus's answers."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from incident import maillogs, report
from incident.observe import Sampler, value, vector_at
from incident.scenario import COURTS, HUB, RECALLS, RELAY
from mailwatch.config.settings import load
from mailwatch.sandbox.prometheus import PrivatePrometheus

if TYPE_CHECKING:
    from incident.agent import Agent, Timing
    from incident.run import Options, Record
    from incident.servers import Stack

MTAS = f'source=~"{HUB}|{RELAY}"'
LAST = "[10s]"
"""Series are read as their last value within two probe intervals (``last_over_time``): a
scrape that timed out at that instant (1 s under load) leaves them stale, not unknown."""


def departures(stack: Stack) -> dict[str, dict[int, float]]:
    """Per MTA, when each replay message was sent on (from its own Postfix log)."""
    year = datetime.now(UTC).year
    out = {}
    for name, instance in ((HUB, stack.hub), (RELAY, stack.relay)):
        if instance is not None and instance.log_path.is_file():
            with instance.log_path.open(errors="replace") as lines:
                out[name] = maillogs.departures(lines, year)
    return out


def sent_messages(
    rec: Record, timing: Timing, left_mta: dict[str, dict[int, float]]
) -> tuple[list[report.Sent], int]:
    """Every message the replay sent, when it arrived and when it left; and how many guessed.

    Arrival: the second the MTA accepted it (queue arrival times are whole seconds). Left:
    queued mail when its MTA's log says it was sent on (if the log does not say, the recovery
    mark, counted as guessed); mailbox mail when it was read.
    """
    out, guessed = [], 0
    for index, item in enumerate(rec.planned):
        arrival = rec.arrival.get(index)
        if arrival is None:
            continue
        if item.entry in (HUB, RELAY):
            left: float | None = left_mta.get(item.entry, {}).get(index)
            if left is None:
                left, guessed = rec.marks["recovery"], guessed + 1
        else:
            left = rec.read.get(" ".join(item.subject.split()))
        sla = timing.slas[item.class_name]
        ident = f"{item.entry}#{index}"
        out.append(report.Sent(ident, item.class_name, item.entry, float(int(arrival)), sla, left))
    return out, guessed


def _vector(prometheus: PrivatePrometheus, expr: str, at: float, *by: str) -> dict[Any, float]:
    found = vector_at(prometheus, expr, at)
    return {tuple(s["metric"].get(k, "") for k in by): value(s) for s in found}


def eta_readings(prometheus: PrivatePrometheus, start: float, clear: float) -> list[dict[str, Any]]:
    """The clear ETA Prometheus held at 25/50/75% of the recovery, against the clear time.

    The headline: both MTAs' whole backlogs pooled, to their predicted clear time
    (``report.headline_remaining`` of the ``mailwatch_source_backlog_*`` gauges).
    ``per_class_remaining`` is the slowest class holding 5% of the queue instead (per class
    pooled across the MTAs: ``report.pooled_etas``), the measure read until December 2026.
    """
    readings = []
    waiting = f"last_over_time(mailwatch_messages{{{MTAS}}}{LAST})"
    draining = f"last_over_time(mailwatch_backlog_drain_rate{{{MTAS}}}{LAST})"
    for fraction in report.FRACTIONS:
        at = start + fraction * (clear - start)
        headline = report.headline_remaining(at, _source_figures(prometheus, at))
        counts = {k[0]: v for k, v in _vector(prometheus, f"sum by (class) ({waiting})", at,
                                               "class").items()}  # fmt: skip
        rates = {k[0]: v for k, v in _vector(prometheus, f"sum by (class) ({draining})", at,
                                              "class").items()}  # fmt: skip
        pooled = report.pooled_etas(counts, rates)
        per_class = report.predicted_remaining(
            {(HUB, k): v for k, v in pooled.items()}, {(HUB, k): v for k, v in counts.items()}
        )
        reading = report.eta_error(at, headline, start, clear)
        reading["per_class_remaining"] = per_class
        readings.append(reading)
    return readings


def _source_figures(
    prometheus: PrivatePrometheus, at: float
) -> dict[str, tuple[float, float, float, float]]:
    """Per MTA: (messages waiting, drain rate, ETA s, clear time) as Prometheus held them."""
    waiting = f"sum by (source) (last_over_time(mailwatch_messages{{{MTAS}}}{LAST}))"
    gauges = [_vector(prometheus, waiting, at, "source")]
    for name in ("drain_rate", "clear_eta_seconds", "clear_time_seconds"):
        expr = f"last_over_time(mailwatch_source_backlog_{name}{{{MTAS}}}{LAST})"
        gauges.append(_vector(prometheus, expr, at, "source"))
    sources = set(gauges[0]).intersection(*gauges[1:])
    return {key[0]: (gauges[0][key], gauges[1][key], gauges[2][key], gauges[3][key])
            for key in sorted(sources)}  # fmt: skip


def probe_max(prometheus: PrivatePrometheus, start: float, end: float) -> dict[str, float]:
    """The longest probe of each source over the run (``mailwatch_probe_duration_seconds``)."""
    expr = f"max_over_time(mailwatch_probe_duration_seconds[{int(end - start) + 5}s])"
    return {s["metric"]["source"]: value(s) for s in vector_at(prometheus, expr, end)}


def dump_raw(path: Path, seen: dict[report.AlertKey, list[float]], rec: Record,
             sent: list[report.Sent], sampler: Sampler) -> None:  # fmt: skip
    """The raw record, to recompute the report without a rerun."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"seen": [[list(k), v] for k, v in seen.items()], "marks": rec.marks,
           "sent": [[s.ident, s.class_name, s.source, s.arrival, s.sla, s.left] for s in sent],
           "backlog": sampler.backlog}  # fmt: skip
    path.write_text(json.dumps(raw))


def p1_section(
    sent: list[report.Sent], priorities: dict[str, str], seen: dict[report.AlertKey, list[float]],
    timing: Timing, end: float,
) -> dict[str, Any]:  # fmt: skip
    """The P1 targets: latency per message, never alerted, over the target."""
    p1 = [s for s in sent if priorities[s.class_name] == "P1"]
    results, excused = report.p1_results(p1, seen, timing.probe, end)
    latencies = [r.latency for r in results if r.latency is not None]
    target = timing.probe + report.SLACK
    return {
        "target": target,
        "expected": len(results),
        "excused": excused,
        "never_alerted": [r.ident for r in results if r.latency is None],
        "latency": report.summarise(latencies),
        "over_target": sum(1 for x in latencies if x > target),
        "per_message": [
            {"id": r.ident, "class": r.class_name, "source": r.source, "latency": r.latency}
            for r in results
        ],
    }


def build(
    opts: Options, stack: Stack, agent: Agent, rec: Record, sampler: Sampler, timing: Timing
) -> dict[str, Any]:
    """The report's data (JSON-ready)."""
    assert stack.prometheus is not None
    priorities = {c.name: str(c.priority) for c in load(agent.config).classifier().all_classes}
    sent, guessed = sent_messages(rec, timing, departures(stack))
    seen = report.timeline(sampler.alerts)
    if opts.out is not None:
        dump_raw(opts.out / f"{opts.name}-{opts.messages}.raw.json", seen, rec, sent, sampler)
    stuck = report.stuck_classes(sent)
    if rec.marks["recovery"] - rec.marks["outage"] > timing.slas["canary"]:
        stuck.add("canary")
    readings = eta_readings(stack.prometheus, rec.marks["recovery"], rec.marks["clear"])
    limit = timing.canary_interval + timing.canary_timeout + timing.probe + report.SLACK
    peak = max((c for _, c in sampler.backlog), key=lambda c: sum(c.values()), default={})
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "timing": {
            "probe": timing.probe,
            "canary_interval": timing.canary_interval,
            "canary_timeout": timing.canary_timeout,
            "drain_halflife": timing.halflife,
            "slas": timing.slas,
        },
        "marks": {k: v - rec.marks["normal"] for k, v in rec.marks.items()},
        "peak_backlog": sum(peak.values()),
        "peak_by_mta": peak,
        "departures_not_in_logs": guessed,
        "mailbox_messages": sum(1 for p in rec.planned if p.entry in (RECALLS, COURTS)),
        "p1": p1_section(sent, priorities, seen, timing, rec.marks["resolved"]),
        "false_alerts": report.false_alerts(seen, stuck),
        "alerts_seen": sorted(
            f"{n} class={c} source={s} states={sorted(sampler.states.get((n, c, s), set()))}"
            for n, c, s in seen
        ),
        "canary": report.canary_detection(rec.marks["outage"], seen, limit),
        "eta": {"readings": readings, "met": report.eta_verdict(readings)},
        "agents": {
            "mailwatch": {
                "peak_rss_mib": agent.peak_rss_mib(),
                "cpu_seconds": agent.cpu_seconds(),
                "probe_max_seconds": probe_max(
                    stack.prometheus, rec.marks["normal"], rec.marks["resolved"]
                ),
            }
        },
        "load_average": os.getloadavg(),
        "gateway_accepted": stack.gateway.handler.accepted if stack.gateway else None,
    }
