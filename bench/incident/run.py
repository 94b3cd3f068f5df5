"""The replay's phases and its command line (``bench/replay.py``; the demo uses it too).

normal flow -> outage (the hub's link to the relay and the relay's gateway are cut; the planned
mail arrives) -> recovery (the link returns at a bounded rate, ``mailwatch flush``, the
mailboxes worked through) -> all clear. Then the report, from what Alertmanager and
Prometheus received.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incident import report
from incident.agent import Agent, Timing, write_config
from incident.markdown import render
from incident.observe import Sampler, screenshot, value, vector_at
from incident.scenario import COURTS, HUB, RECALLS, RELAY, Planned, build_message, plan_messages
from incident.servers import USERS, Stack
from incident.traffic import inject, work_through
from mailwatch.config.settings import load
from mailwatch.parsing.eml import message_from_bytes

Echo = Callable[[str], None]


@dataclass
class Options:
    """The command line."""

    messages: int = 30_000
    scale: float = 60.0
    probe: float = 5.0
    outage: float = 300.0
    drain_rate: float = 150.0
    read_rate: float = 5.0
    out: Path | None = Path("bench/results")
    name: str = "replay"
    demo: bool = False


@dataclass
class Record:
    """What happened when (epoch seconds), filled in as the replay plays."""

    planned: list[Planned] = field(default_factory=list)
    arrival: dict[int, float] = field(default_factory=dict)
    read: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)


def check_classes(config: Path, planned: list[Planned]) -> None:
    """Every planned subject is classified as intended by the replay's configuration."""
    classifier = load(config).classifier()
    seen: set[tuple[str, str]] = set()
    for item in planned:
        if (item.entry, item.class_name) in seen:
            continue
        seen.add((item.entry, item.class_name))
        got = classifier.classify(message_from_bytes(build_message(item).as_bytes())).name
        if got != item.class_name:
            raise SystemExit(f"replay mail {item.subject!r} is {got}, not {item.class_name}")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every half second; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)


def _ready(agent: Agent) -> bool:
    try:
        with urllib.request.urlopen(agent.url + "/readyz", timeout=2) as reply:  # noqa: S310
            return bool(reply.status == 200)
    except OSError:
        return False


def play(opts: Options, stack: Stack, agent: Agent, echo: Echo) -> dict[str, Any]:
    """Set up, run every phase, and return the report's data."""
    rec = Record(planned=plan_messages(opts.messages))
    stack.start(f"127.0.0.1:{agent.port}")
    agent.config, timing = write_config(stack, agent.port, opts.scale, opts.probe)
    check_classes(agent.config, rec.planned)
    agent.start()
    wait_until(lambda: _ready(agent), 60, "mailwatch /readyz")
    assert stack.hub and stack.relay and stack.dovecot and stack.prometheus
    sampler = Sampler(stack)
    sampler.start()
    echo(f"status page: {agent.url}/   (config: {agent.config})")
    ports = {HUB: stack.hub.smtp_port, "relay": stack.relay.smtp_port}
    rec.marks["normal"] = time.time()
    normal = [
        p for p in plan_messages(max(40, opts.messages // 200), seed=1) if p.entry in (HUB, RELAY)
    ]
    inject(normal, ports, 3 * opts.probe, threads=2)
    time.sleep(3 * opts.probe)
    echo(f"outage: the relay goes away; {len(rec.planned)} messages arrive")
    stack.outage()
    rec.marks["outage"] = time.time()
    rec.arrival = inject(rec.planned, ports, opts.outage * 0.5)
    rec.marks["injected"] = time.time()
    wait_until(lambda: time.time() - rec.marks["outage"] >= opts.outage, opts.outage * 3, "outage")
    rec.marks["peak"] = time.time()
    peak_shot(opts, agent, stack, "peak")
    echo(f"recovery: the relay returns; queued {sampler.total()}")
    rec.marks["recovery"] = time.time()
    recover(opts, stack, agent, rec, sampler)
    echo("all clear: waiting for the alerts to resolve")
    still_open: list[str] = []
    try:
        wait_until(lambda: not _open_alerts(stack), 20 * opts.probe, "alerts resolved")
    except TimeoutError:
        still_open = sorted(_describe(a) for a in _open_alerts(stack))
    rec.marks["resolved"] = time.time()
    peak_shot(opts, agent, stack, "end")
    sampler.stop()
    data = build(opts, stack, agent, rec, sampler, timing)
    data["still_open_at_end"] = still_open
    return data


def _describe(alert: dict[str, Any]) -> str:
    labels = alert["labels"]
    return " ".join(f"{k}={labels[k]}" for k in ("alertname", "class", "source") if k in labels)


def _open_alerts(stack: Stack) -> list[dict[str, Any]]:
    assert stack.alertmanager is not None
    return [a for a in stack.alertmanager.alerts() if a["labels"].get("alertname") != "Watchdog"]


def recover(opts: Options, stack: Stack, agent: Agent, rec: Record, sampler: Sampler) -> None:
    """The link returns (bounded), the queues are flushed, the mailboxes worked through."""
    assert stack.dovecot is not None
    sizes = [len(build_message(p).as_bytes()) for p in rec.planned[:200]]
    per_message = sum(sizes) / len(sizes) + 300  # SMTP commands and replies
    stack.recover(opts.drain_rate * per_message)
    echo_flush = agent.cli("flush", "--yes")
    rec.marks["flushed"] = time.time()
    readers = []
    for source in (RECALLS, COURTS):
        user = source.removesuffix("_inbox")

        def read(user: str = user) -> None:
            rec.read.update(
                work_through(stack.dovecot.imap_port, user, USERS[user], opts.read_rate,  # type: ignore[union-attr]
                             lambda: False)
            )  # fmt: skip

        readers.append(threading.Thread(target=read, daemon=True))
    for each in readers:
        each.start()
    wait_until(lambda: sampler.total() == 0 and time.time() > rec.marks["flushed"] + 2,
               max(600.0, 10 * opts.messages / opts.drain_rate), "queues clear")  # fmt: skip
    for each in readers:
        each.join(600)
    rec.marks["clear"] = next(
        (
            at
            for at, counts in sampler.backlog
            if at > rec.marks["recovery"] and not sum(counts.values())
        ),
        time.time(),
    )
    rec.marks["flush_output"] = 0.0 if echo_flush else 1.0


def peak_shot(opts: Options, agent: Agent, stack: Stack, when: str) -> None:
    """The duty-manager page now, as a PNG in the output directory."""
    if opts.out is None:
        return
    target = opts.out / f"{opts.name}-{opts.messages}-{when}.png"
    try:
        screenshot(agent.url + "/", target, stack.root / f"chromium-{when}")
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"screenshot {when} failed: {exc}")


def _sent(rec: Record, timing: Timing, priority_of: dict[str, str]) -> list[report.Sent]:
    out = []
    for index, item in enumerate(rec.planned):
        arrival = rec.arrival.get(index)
        if arrival is None:
            continue
        if item.entry in (HUB, RELAY):
            left: float | None = rec.marks["recovery"]
        else:
            left = rec.read.get(" ".join(item.subject.split()))
        out.append(report.Sent(f"{item.entry}#{index}", item.class_name, item.entry,
                               float(int(arrival)), timing.slas[item.class_name], left))  # fmt: skip
    _ = priority_of
    return out


def build(
    opts: Options, stack: Stack, agent: Agent, rec: Record, sampler: Sampler, timing: Timing
) -> dict[str, Any]:
    """The report's data from the records, Alertmanager's samples and Prometheus."""
    assert stack.prometheus is not None
    classes = {c.name: str(c.priority) for c in load(agent.config).classifier().all_classes}
    sent = _sent(rec, timing, classes)
    seen = report.timeline(sampler.alerts)
    p1 = [s for s in sent if classes[s.class_name] == "P1"]
    results, excused = report.p1_results(p1, seen, timing.probe, rec.marks["resolved"])
    latencies = [r.latency for r in results if r.latency is not None]
    stuck = report.stuck_classes(sent)
    if rec.marks["recovery"] - rec.marks["outage"] > timing.slas["canary"]:
        stuck.add("canary")
    start, clear = rec.marks["recovery"], rec.marks["clear"]
    readings = []
    for fraction in report.FRACTIONS:
        at = start + fraction * (clear - start)
        etas = {
            (s["metric"]["source"], s["metric"]["class"]): value(s)
            for s in vector_at(
                stack.prometheus, 'mailwatch_backlog_clear_eta_seconds{source=~"hub|relay"}', at
            )
        }
        counts = {
            (s["metric"]["source"], s["metric"]["class"]): value(s)
            for s in vector_at(
                stack.prometheus,
                'sum by (source, class) (mailwatch_messages{source=~"hub|relay"})',
                at,
            )
        }
        remaining = report.predicted_remaining(etas, counts)
        readings.append(
            report.eta_error(at, remaining if remaining is not None else float("nan"), start, clear)
        )
    span = int(rec.marks["resolved"] - rec.marks["normal"]) + 5
    probes = {
        s["metric"]["source"]: value(s)
        for s in vector_at(
            stack.prometheus,
            f"max_over_time(mailwatch_probe_duration_seconds[{span}s])",
            rec.marks["resolved"],
        )
    }
    limit = timing.canary_interval + timing.canary_timeout + timing.probe + report.SLACK
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "timing": {
            "probe": timing.probe,
            "canary_interval": timing.canary_interval,
            "canary_timeout": timing.canary_timeout,
            "drain_halflife": timing.halflife,
            "slas": timing.slas,
        },
        "marks": {k: v - rec.marks["normal"] for k, v in rec.marks.items() if k != "flush_output"},
        "peak_backlog": max((sum(c.values()) for _, c in sampler.backlog), default=0),
        "peak_by_mta": max(
            (c for _, c in sampler.backlog), key=lambda c: sum(c.values()), default={}
        ),
        "mailbox_messages": sum(1 for p in rec.planned if p.entry in (RECALLS, COURTS)),
        "p1": {
            "target": timing.probe + report.SLACK,
            "expected": len(results),
            "excused": excused,
            "never_alerted": [r.ident for r in results if r.latency is None],
            "latency": report.summarise(latencies),
            "over_target": sum(1 for x in latencies if x > timing.probe + report.SLACK),
            "per_message": [vars_of(r) for r in results],
        },
        "false_alerts": report.false_alerts(seen, stuck),
        "alerts_seen": sorted(
            f"{n} class={c} source={s} states={sorted(sampler.states.get((n, c, s), set()))}"
            for n, c, s in seen
        ),
        "canary": report.canary_detection(rec.marks["outage"], seen, limit),
        "eta": {"readings": readings, "met": report.eta_verdict(readings)},
        "agents": {
            "mailwatch": {"peak_rss_mib": agent.peak_rss_mib(), "probe_max_seconds": probes}
        },
        "load_average": os.getloadavg(),
        "gateway_accepted": stack.gateway.handler.accepted if stack.gateway else None,
    }


def vars_of(result: report.P1Result) -> dict[str, Any]:
    """A P1 result as JSON."""
    return {"id": result.ident, "class": result.class_name, "source": result.source,
            "latency": result.latency}  # fmt: skip


def write(data: dict[str, Any], opts: Options) -> None:
    """``NAME-MESSAGES.json`` and ``.md`` in the output directory."""
    if opts.out is None:
        return
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = opts.out / f"{opts.name}-{opts.messages}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(render(data))


def parse(argv: list[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(prog="bench/replay.py", description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000, help="queued at the peak (30000)")
    parser.add_argument("--scale", type=float, default=60.0, help="time compression (60x)")
    parser.add_argument("--probe", type=float, default=5.0, help="probe interval, compressed s")
    parser.add_argument("--outage", type=float, default=300.0, help="outage, compressed s")
    parser.add_argument("--drain-rate", type=float, default=150.0, help="link, messages/s")
    parser.add_argument("--read-rate", type=float, default=5.0, help="mailbox reading, msg/s")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="replay")
    args = parser.parse_args(argv)
    return Options(messages=args.messages, scale=args.scale, probe=args.probe,
                   outage=args.outage, drain_rate=args.drain_rate, read_rate=args.read_rate,
                   out=args.out, name=args.name)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the replay; exit 0 when every target is met, 1 otherwise."""
    opts = parse(argv)
    stack, agent = Stack.create(opts.scale), Agent.plan()
    try:
        data = play(opts, stack, agent, print)
    finally:
        agent.stop()
        stack.close()
    write(data, opts)
    print(render(data))
    return 0 if data["p1"]["never_alerted"] == [] and not data["false_alerts"] else 1
