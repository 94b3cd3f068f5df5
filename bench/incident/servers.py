"""The private servers of the replay, on loopback, under one temporary directory.

National hub (Postfix) --link--> regional relay (Postfix) --LMTP--> Dovecot (the functional
mailboxes and the canary mailbox); the relay's other mail goes on to the gateway. A real
Prometheus scrapes mailwatch with the shipped rules (``for`` scaled like everything else) and
sends its alerts to a real Alertmanager, which gets mailwatch's own alerts too. ``close``
stops every daemon and removes the directory (the demo's Ctrl-C runs it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from incident.links import Gateway, Link, LoopThread
from incident.scenario import CANARY_DOMAIN, CASES_DOMAIN, scaled, span_seconds
from mailwatch.sandbox.alertmanager import PrivateAlertmanager
from mailwatch.sandbox.dovecot import PrivateDovecot
from mailwatch.sandbox.postfix import PrivatePostfix, free_port
from mailwatch.sandbox.prometheus import PrivatePrometheus

REPO = Path(__file__).resolve().parents[2]
RULES = (REPO / "deploy/prometheus/mailwatch.rules.yml",)
USERS = {"recalls": "recalls-pw", "courts": "courts-pw", "canary": "canary-pw"}
_RANGE = re.compile(r"\[(\d+[smhd])\]")
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def scaled_rules(source: Path, target: Path, scale: float) -> Path:
    """A copy of a shipped Prometheus rule file with every ``for`` divided by ``scale``."""
    document = yaml.safe_load(source.read_text())
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if "for" in rule:
                rule["for"] = f"{scaled(span_seconds(str(rule['for'])), scale)}s"
            if "expr" in rule:  # range selectors: increase(x[30m]) -> increase(x[30s])
                rule["expr"] = _RANGE.sub(
                    lambda m: f"[{scaled(span_seconds(m.group(1)), scale)}s]", str(rule["expr"])
                )
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def queued(instance: PrivatePostfix) -> int:
    """Messages in the instance's queues, by counting queue files (cheap at 30,000)."""
    total = 0
    for name in QUEUES:
        stack = [instance.queue_dir / name]
        while stack:
            with contextlib.suppress(FileNotFoundError), os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        total += 1
    return total


@dataclass
class Stack:
    """Every server of the replay; ``start`` brings them up in dependency order."""

    root: Path
    scale: float
    loop: LoopThread = field(default_factory=LoopThread)
    dovecot: PrivateDovecot | None = None
    relay: PrivatePostfix | None = None
    hub: PrivatePostfix | None = None
    link: Link | None = None
    gateway: Gateway | None = None
    prometheus: PrivatePrometheus | None = None
    alertmanager: PrivateAlertmanager | None = None

    @classmethod
    def create(cls, scale: float) -> Stack:
        """A stack under a new temporary directory (nothing started yet)."""
        return cls(root=Path(tempfile.mkdtemp(prefix="mw-replay-")), scale=scale)

    def start(self, metrics_target: str) -> None:
        """Start Dovecot, the gateway, the relay, the link, the hub, Alertmanager, Prometheus."""
        self.dovecot = PrivateDovecot.create(self.root / "dovecot", users=USERS)
        self.dovecot.start()
        self.gateway = Gateway(free_port())
        self.gateway.up()
        lmtp = f"lmtp:inet:127.0.0.1:{self.dovecot.lmtp_port}"
        self.relay = PrivatePostfix.create(
            self.root / "relay", relay_port=self.gateway.port,
            transports={CASES_DOMAIN: lmtp, CANARY_DOMAIN: lmtp},
            hostname="relay.replay.invalid",
        )  # fmt: skip
        self.relay.start()
        self.link = Link(free_port(), self.relay.smtp_port)
        self.loop.call(self.link.up())
        self.hub = PrivatePostfix.create(
            self.root / "hub", relay_port=self.link.port,
            hostname="hub.replay.invalid",
        )  # fmt: skip
        self.hub.start()
        self.alertmanager = PrivateAlertmanager.create(self.root / "alertmanager")
        self.alertmanager.start()
        rules = [scaled_rules(p, self.root / p.name, self.scale) for p in RULES]
        rules.append(self.root / "mailwatch-sla.rules.yml")  # written by the agent set-up
        self.prometheus = PrivatePrometheus(
            self.root / "prometheus", targets=[metrics_target], rule_files=rules,
            alertmanagers=[self.alertmanager.url.removeprefix("http://")],
        )  # fmt: skip
        self.prometheus.start()

    def outage(self) -> None:
        """The relay goes away: the hub's link and the relay's onward gateway are cut."""
        assert self.link is not None
        assert self.gateway is not None
        self.loop.call(self.link.down())
        self.gateway.down()

    def recover(self, rate: float | None) -> None:
        """The relay returns, its link limited to ``rate`` bytes a second."""
        assert self.link is not None
        assert self.gateway is not None
        self.link.rate = rate
        self.gateway.up()
        self.loop.call(self.link.up())

    def backlog(self) -> dict[str, int]:
        """Messages queued at each MTA right now."""
        return {
            name: queued(instance)
            for name, instance in (("hub", self.hub), ("relay", self.relay))
            if instance is not None
        }

    def close(self) -> None:
        """Stop every daemon (even half-started ones) and remove the directory."""
        steps: list[Callable[[], object]] = []
        for each in (self.prometheus, self.alertmanager, self.hub):
            if each is not None:
                steps.append(each.stop)
        if self.link is not None:
            link = self.link
            steps.append(lambda: self.loop.call(link.down()))
        for other in (self.relay, self.dovecot):
            if other is not None:
                steps.append(other.stop)
        if self.gateway is not None:
            steps.append(self.gateway.down)
        steps.append(self.loop.close)
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        shutil.rmtree(self.root, ignore_errors=True)
