"""A private Prometheus Alertmanager on a loopback port, for tests and demos.

Started as the project's notes describe (``--cluster.listen-address=`` empty, so clustering
does not listen on port 9094 on every interface), with its config and storage under
``root``. Optionally it routes every alert to one webhook (``notify_url``) with
``send_resolved``, short group timings, and grouping by mailwatch's identifying labels: a
test can then see what Alertmanager itself would tell the duty managers, including
resolutions. Alertmanager keeps alerts in memory only: a restart forgets them (silences and
the notification log survive in ``storage.path``).

Note on ``GET /api/v2/alerts`` (:meth:`PrivateAlertmanager.alerts`): Alertmanager never lists
an alert whose ``endsAt`` has passed (resolved or timed out), whatever the filters; the
``active``/``silenced``/``inhibited``/``unprocessed`` flags only narrow the unresolved ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwatch.sandbox.postfix import free_port
from mailwatch.sandbox.process import launch, log_tail, stop, wait_ready

BINARY = "prometheus-alertmanager"
"""Debian's name for it (upstream: ``alertmanager``)."""


class AlertmanagerError(RuntimeError):
    """The private Alertmanager did not start or answered with an error."""


@dataclass
class PrivateAlertmanager:
    """``prometheus-alertmanager`` with its config and storage under ``root``."""

    root: Path
    port: int = 0
    notify_url: str | None = None
    """Where Alertmanager sends its own notifications (a webhook), if anywhere."""
    _process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls, root: Path, *, port: int = 0, notify_url: str | None = None
    ) -> PrivateAlertmanager:
        """Write a configuration under ``root`` (port 0: pick a free one); not started."""
        instance = cls(root=root.resolve(), port=port or free_port(), notify_url=notify_url)
        instance.write_config()
        return instance

    @property
    def url(self) -> str:
        """Base URL of the web API (what mailwatch's ``urls`` lists)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """``alertmanager.yml`` (JSON, which is valid YAML)."""
        return self.root / "alertmanager.yml"

    def write_config(self) -> Path:
        """Write the configuration and return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        receiver: dict[str, Any] = {"name": "default"}
        if self.notify_url:
            receiver["webhook_configs"] = [{"url": self.notify_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": "default",
                "group_by": ["alertname", "class", "source"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        return self.config_path

    def check_config(self) -> None:
        """Validate the configuration with ``amtool check-config``."""
        proc = subprocess.run(["amtool", "check-config", str(self.config_path)],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise AlertmanagerError(f"amtool check-config failed: {proc.stdout}{proc.stderr}")

    def is_running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20) -> None:
        """Start and wait until ``/-/ready`` answers."""
        if self.is_running():
            return
        binary = shutil.which(BINARY) or shutil.which("alertmanager")
        if binary is None:
            raise AlertmanagerError(f"{BINARY} is not installed (scripts/bootstrap installs it)")
        self._process = launch(
            [binary, f"--config.file={self.config_path}", f"--storage.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            self.root / "alertmanager.log",
        )  # fmt: skip
        wait_ready(
            self._process,
            f"{self.url}/-/ready",
            timeout,
            lambda why: AlertmanagerError(f"alertmanager {why}: {self.log_tail()}"),
        )

    def stop(self) -> None:
        """Stop Alertmanager and wait for it (it forgets its alerts)."""
        stop(self._process)
        self._process = None

    def log_tail(self, lines: int = 15) -> str:
        """The end of Alertmanager's own log."""
        return log_tail(self.root / "alertmanager.log", lines)

    def alerts(self, *matchers: str, **flags: bool) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: unresolved alerts only (see the module docstring).

        Narrowed by label ``matchers`` (``'source="mta1"'``) and flags (``active``,
        ``silenced``, ``inhibited``, ``unprocessed``; each defaults to ``true``).
        """
        params: list[tuple[str, str]] = [("filter", m) for m in matchers]
        params += [(name, "true" if value else "false") for name, value in flags.items()]
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=10) as resp:
                result: list[dict[str, Any]] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AlertmanagerError(f"GET /api/v2/alerts: {exc.code} {exc.read()!r}") from exc
        return result
