"""What the replay watches while it plays: Alertmanager, the queues, Prometheus, the page.

``Sampler`` polls in a thread of its own: Alertmanager's ``/api/v2/alerts`` (every alert it
holds, with its state) and the queue files of both MTAs, twice a second. Prometheus is asked
afterwards (its HTTP API, ``query`` at a past instant). Screenshots come from a headless
Chromium driven over the DevTools protocol (:func:`mailwatch.sandbox.chromium.screenshot`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from incident.servers import Stack
from mailwatch.sandbox.prometheus import PrivatePrometheus, PrometheusError

Key = tuple[str, str, str]


class Sampler:
    """Samples Alertmanager and the queues every ``period`` seconds until stopped."""

    def __init__(self, stack: Stack, period: float = 0.5) -> None:
        self.stack, self.period = stack, period
        self.alerts: list[tuple[float, list[Key]]] = []
        self.states: dict[Key, set[str]] = {}
        self.backlog: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        assert self.stack.alertmanager is not None
        while not self._stop.is_set():
            at = time.time()
            with contextlib.suppress(Exception):
                keys = []
                for alert in self.stack.alertmanager.alerts():
                    labels = alert["labels"]
                    key = (labels.get("alertname", ""), labels.get("class", ""),
                           labels.get("source", ""))  # fmt: skip
                    keys.append(key)
                    self.states.setdefault(key, set()).add(alert["status"]["state"])
                self.alerts.append((at, keys))
            with contextlib.suppress(Exception):
                self.backlog.append((time.time(), self.stack.backlog()))
            self._stop.wait(max(0.0, self.period - (time.time() - at)))

    def total(self) -> int:
        """The latest queued total across the MTAs (0 before any sample)."""
        return sum(self.backlog[-1][1].values()) if self.backlog else 0


def vector_at(prometheus: PrivatePrometheus, expr: str, at: float) -> list[dict[str, Any]]:
    """An instant query at a past time (``[]`` on an error)."""
    try:
        data = prometheus.api("query", query=expr, time=f"{at:.3f}")
    except PrometheusError:
        return []
    return list(data.get("result", []))


def value(sample: dict[str, Any]) -> float:
    """The float of one vector sample (``+Inf`` included)."""
    return float(sample["value"][1])
