"""The replay's phases and its command line (``bench/replay.py``; the demo uses it too).

normal flow -> outage (the hub's link to the relay and the relay's gateway are cut; the planned
mail arrives) -> recovery (the link returns at a bounded rate, ``mailwatch flush``, the
mailboxes worked through) -> all clear. Then the report, from what Alertmanager and
Prometheus received.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incident.agent import Agent, write_config
from incident.evidence import build
from incident.markdown import render
from incident.observe import Sampler
from incident.scenario import COURTS, HUB, RECALLS, RELAY, Planned, build_message, plan_messages
from incident.servers import USERS, Stack
from incident.traffic import inject, work_through
from mailwatch.config.settings import load
from mailwatch.parsing.eml import message_from_bytes
from mailwatch.sandbox.chromium import screenshot

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
    assert stack.hub
    assert stack.relay
    assert stack.prometheus
    sampler = Sampler(stack)
    sampler.start()
    echo(f"status page: {agent.url}/")
    echo(f"working directory (removed on exit): {stack.root}")
    if opts.demo:
        echo(try_these(agent))
    ports = {HUB: stack.hub.smtp_port, "relay": stack.relay.smtp_port}
    rec.marks["normal"] = time.time()
    normal = [
        p for p in plan_messages(max(40, opts.messages // 200), seed=1) if p.entry in (HUB, RELAY)
    ]
    inject(normal, ports, 3 * opts.probe, threads=2, tagged=False)
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
    data = build(opts, stack, agent, rec, sampler, timing)  # before the agent stops: its RSS
    data["still_open_at_end"] = still_open
    return data


def _describe(alert: dict[str, Any]) -> str:
    labels = alert["labels"]
    return " ".join(f"{k}={labels[k]}" for k in ("alertname", "class", "source") if k in labels)


def try_these(agent: Agent) -> str:
    """The commands a newcomer can try while the demo plays."""
    mw = Path(sys.executable).parent / "mailwatch"
    return "\n".join([
        "Try, while it plays (another terminal):",
        f"  export MAILWATCH_CONFIG={agent.config}",
        f"  {mw} stuck --priority P1     # what is stuck, most urgent first, and why",
        f"  {mw} shape deferred          # where the queued mail is going, by age",
        f"  {mw} alerts                  # firing alerts: the ALERT column is the id",
        f"  {mw} ack p1_stuck/recall_emergency/hub --by you --note 'phoning PPCS'",
        f"  {mw} backlog                 # per-class backlog, drain rate, clear ETA",
        "Ctrl-C stops everything and removes the working directory.",
    ])  # fmt: skip


def _open_alerts(stack: Stack) -> list[dict[str, Any]]:
    assert stack.alertmanager is not None
    return [a for a in stack.alertmanager.alerts() if a["labels"].get("alertname") != "Watchdog"]


def recover(opts: Options, stack: Stack, agent: Agent, rec: Record, sampler: Sampler) -> None:
    """The link returns (bounded), the queues are flushed, the mailboxes worked through."""
    assert stack.dovecot is not None
    sizes = [len(build_message(p).as_bytes()) for p in rec.planned[:200]]
    per_message = sum(sizes) / len(sizes) + 300  # SMTP commands and replies
    stack.recover(opts.drain_rate * per_message)
    agent.cli("flush", "--yes")  # the operator retries the deferred mail: mailwatch flush
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


def peak_shot(opts: Options, agent: Agent, stack: Stack, when: str) -> None:
    """The duty-manager page now, as a PNG in the output directory."""
    if opts.out is None:
        return
    target = opts.out / f"{opts.name}-{opts.messages}-{when}.png"
    try:
        screenshot(agent.url + "/", target, stack.root / f"chromium-{when}")
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"screenshot {when} failed: {exc}")


def write(data: dict[str, Any], opts: Options) -> None:
    """``NAME-MESSAGES.json`` and ``.md`` in the output directory."""
    if opts.out is None:
        return
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = opts.out / f"{opts.name}-{opts.messages}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(render(data))


DEMO = {"messages": 3000, "outage": 150.0, "drain_rate": 40.0}
"""The demo's defaults: a few minutes, a few thousand messages."""


def parse(argv: list[str] | None) -> Options:
    """Options from the command line (``--demo`` changes the defaults: ``DEMO``)."""
    parser = argparse.ArgumentParser(prog="bench/replay.py", description=__doc__)
    parser.add_argument("--messages", type=int, help="queued at the peak (30000; demo 3000)")
    parser.add_argument("--scale", type=float, default=60.0, help="time compression (60x)")
    parser.add_argument("--probe", type=float, default=5.0, help="probe interval, compressed s")
    parser.add_argument("--outage", type=float, help="outage, compressed s (300; demo 150)")
    parser.add_argument("--drain-rate", type=float, help="link, messages/s (150; demo 40)")
    parser.add_argument("--read-rate", type=float, default=5.0, help="mailbox reading, msg/s")
    parser.add_argument(
        "--out", type=Path, help="report and screenshots (bench/results; demo: none)"
    )
    parser.add_argument("--name", default="replay")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the short demo: print the commands to try, keep running to Ctrl-C",
    )
    args = parser.parse_args(argv)
    defaults = DEMO if args.demo else {"messages": 30_000, "outage": 300.0, "drain_rate": 150.0}
    chosen = {k: v if (v := getattr(args, k)) is not None else defaults[k] for k in defaults}
    out = args.out if args.out or args.demo else Path("bench/results")
    return Options(scale=args.scale, probe=args.probe, read_rate=args.read_rate, out=out,
                   name=args.name, demo=args.demo, **chosen)  # type: ignore[arg-type]  # fmt: skip


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def echo(text: str) -> None:
    """Print at once (the demo's output is read as it comes)."""
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the replay; exit 0 when every target is met, 1 otherwise (130 on Ctrl-C)."""
    opts = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    stack, agent = Stack.create(opts.scale), Agent.plan()
    try:
        data = play(opts, stack, agent, echo)
        if opts.demo:
            echo(render(data))
            echo(f"All clear. The servers and {agent.url}/ stay up: Ctrl-C to stop and clean up.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping: every server, then the working directory")
        return 130
    finally:
        agent.stop()
        stack.close()
    write(data, opts)
    print(render(data))
    return 0 if data["p1"]["never_alerted"] == [] and not data["false_alerts"] else 1
