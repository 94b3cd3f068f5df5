"""mailwatch itself, as a user runs it: a configuration file, ``mailwatch run``, the CLI.

The configuration is the only place time is compressed: the shipped taxonomy with every SLA
divided by the scale, probe intervals and the canary timeout likewise, the drain half-life
(``[metrics] drain_halflife``) too. The agent is a real process (``python -m mailwatch run``);
its peak RSS is read from ``/proc/PID/status`` (VmHWM) before it is stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incident.scenario import CANARY_DOMAIN, COURTS, HUB, RECALLS, RELAY, scaled, scaled_taxonomy
from incident.servers import REPO, USERS, Stack
from mailwatch.sandbox.postfix import free_port

TAXONOMY = REPO / "mailwatch/core/taxonomy.toml"
SLA_RULES = REPO / "deploy/prometheus/generate_sla_rules.py"


@dataclass(frozen=True, slots=True)
class Timing:
    """The replay's compressed intervals, in seconds (real ones: ``real * scale``)."""

    probe: int
    canary_interval: int
    canary_timeout: int
    halflife: int
    slas: dict[str, int]


def write_config(stack: Stack, port: int, scale: float, probe: float) -> tuple[Path, Timing]:
    """Write ``mailwatch.toml`` (and its Prometheus SLA rules) for ``stack``; its timing.

    ``probe`` is the probe interval in compressed seconds (the real equivalent is
    ``probe * scale``); the canary is sent every probe and lost after 10 real minutes.
    """
    assert stack.hub
    assert stack.relay
    assert stack.dovecot
    assert stack.alertmanager
    taxonomy, slas = scaled_taxonomy(TAXONOMY.read_text(), scale)
    timing = Timing(
        probe=int(probe), canary_interval=int(probe),
        canary_timeout=max(scaled(600, scale), 2 * int(probe)),
        halflife=scaled(600, scale), slas=slas,
    )  # fmt: skip
    secrets = stack.root / "secrets"
    secrets.mkdir(exist_ok=True)
    for user, password in USERS.items():
        (secrets / user).write_text(password)
    imap = f'type = "imap"\nhost = "127.0.0.1"\nport = {stack.dovecot.imap_port}\n'
    imap += f'security = "plain"\ninterval = "{timing.probe}s"\ntimeout = "30s"\n'
    am = f'type = "alertmanager"\nurls = ["{stack.alertmanager.url}"]\nresend_every = 5.0\n'
    config = f"""# Written by bench/replay.py: the replay's mailwatch, time compressed {scale:g}x.
include_default_classes = false
default_class = "general"
[store]
path = "{stack.root / "mailwatch.db"}"
[http]
listen = "127.0.0.1:{port}"
[status]
refresh_seconds = 10
[metrics]
drain_halflife = "{timing.halflife}s"
partner_domains = ["justice.example", "police.example"]
[sources.{HUB}]
type = "postfix"
config_dir = "{stack.hub.config_dir}"
interval = "{timing.probe}s"
timeout = "60s"
[sources.{RELAY}]
type = "postfix"
config_dir = "{stack.relay.config_dir}"
interval = "{timing.probe}s"
timeout = "60s"
[sources.{RECALLS}]
{imap}user = "recalls"
password = {{ file = "{secrets / "recalls"}" }}
[sources.{COURTS}]
{imap}user = "courts"
password = {{ file = "{secrets / "courts"}" }}
[sources.canary_hub_relay]
type = "canary"
submission_host = "127.0.0.1"
submission_port = {stack.hub.smtp_port}
submission_security = "none"
sender = "mailwatch@probation.example"
recipient = "canary@{CANARY_DOMAIN}"
imap_host = "127.0.0.1"
imap_port = {stack.dovecot.imap_port}
imap_security = "plain"
imap_user = "canary"
imap_password = {{ file = "{secrets / "canary"}" }}
interval = "{timing.canary_interval}s"
timeout = "{timing.canary_timeout}s"
io_timeout = "10s"
[receivers.duty_managers]
{am}[receivers.ops]
{am}
{taxonomy}"""
    path = stack.root / "mailwatch.toml"
    path.write_text(config)
    subprocess.run(
        [sys.executable, str(SLA_RULES), "--config", str(path),
         "--output", str(stack.root / "mailwatch-sla.rules.yml")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path, timing


@dataclass
class Agent:
    """One ``mailwatch run`` process."""

    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def plan(cls) -> Agent:
        """An agent on a free port (configured by ``write_config``, started by ``start``)."""
        return cls(config=Path(), port=free_port())

    @property
    def url(self) -> str:
        """Its HTTP base URL (status page, API, /metrics)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start ``mailwatch run`` (its log next to its configuration)."""
        log = (self.config.parent / "mailwatch.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailwatch", "-c", str(self.config), "run"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def peak_rss_mib(self) -> float | None:
        """VmHWM of the running process, in MiB."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except FileNotFoundError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the running process so far (``/proc/PID/stat``)."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``mailwatch -c CONFIG ARGS`` and return its output."""
        proc = subprocess.run(
            [sys.executable, "-m", "mailwatch", "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        return proc.stdout + proc.stderr

    def api(self, path: str) -> Any:
        """GET an open JSON path of the agent."""
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 20 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
