"""A private Prometheus on a loopback port, scraping given targets, for tests and demos."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailwatch.sandbox.postfix import free_port
from mailwatch.sandbox.process import launch, log_tail, stop, wait_ready


class PrometheusError(RuntimeError):
    """The private Prometheus did not start or answered with an error."""


@dataclass
class PrivatePrometheus:
    """``prometheus`` with its config and TSDB under ``root``."""

    root: Path
    targets: list[str]
    rule_files: list[Path] = field(default_factory=list)
    interval: str = "1s"
    port: int = 0
    alertmanagers: list[str] = field(default_factory=list)
    """``host:port`` of Alertmanagers that get the rules' alerts (none: rules only evaluate)."""
    _process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        """Base URL of the web API."""
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Write ``prometheus.yml`` (JSON is valid YAML) and return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": "mailwatch", "static_configs": [{"targets": self.targets}]}
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]
            }
        path = self.root / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 20) -> None:
        """Start and wait until ``/-/ready`` answers."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus is not installed (scripts/bootstrap installs it)")
        config = self.write_config()
        self._process = launch(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            self.root / "prometheus.log",
        )  # fmt: skip
        wait_ready(
            self._process,
            f"{self.url}/-/ready",
            timeout,
            lambda why: PrometheusError(f"prometheus {why}: {self.log_tail()}"),
        )

    def log_tail(self, lines: int = 15) -> str:
        """The end of Prometheus's own log."""
        return log_tail(self.root / "prometheus.log", lines)

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/PATH`` and return its ``data`` (raises on an API error)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/{path}?{query}", timeout=10
            ) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            raise PrometheusError(f"{path} {params}: {body.get('error', exc)}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query; returns the result vector."""
        data = self.api("query", query=expr)
        return list(data["result"]) if isinstance(data.get("result"), list) else [data]

    def stop(self) -> None:
        """Stop Prometheus and wait for it."""
        stop(self._process)
        self._process = None
