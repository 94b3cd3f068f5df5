"""`mailwatch run` against the real Postfix, scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.sandbox.prometheus import PrivatePrometheus, PrometheusError
from mailwatch.web.runner import run_service

pytestmark = [pytest.mark.postfix, pytest.mark.prometheus]

SUBJECTS = ["Emergency recall - J Bloggs CRN X765432", "Emergency recall - A Nother"]
PERSONAL = ["J Bloggs", "X765432", "A Nother", "Emergency recall", "ppcs@", "justice.example",
            "om@probation.example"]  # fmt: skip


@pytest.fixture(name="settings")
def fixture_settings(tmp_path: Path, postfix: PrivatePostfix) -> Settings:
    """Watch the test Postfix every second; emergency recalls are stuck after 1 s."""
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f"""
[store]
path = "mw.db"
[http]
listen = "127.0.0.1:{free_port()}"
[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "1s"
[sources.mta1_log]
type = "maillog"
path = "{postfix.log_path}"
outcomes_for = "mta1"
interval = "1s"
[classes.recall_emergency]
priority = "P1"
stuck_after = "1s"
[[classes.recall_emergency.match]]
subject = 'emergency\\s+recall'
"""
    )
    return load(config)


@pytest.fixture(name="running")
async def fixture_running(settings: Settings) -> AsyncIterator[Settings]:
    """The mailwatch service, running in the test's event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    await asyncio.sleep(0.5)
    yield settings
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def _get(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, response.headers["Content-Type"], response.read().decode()


async def _eventually(check: Callable[[], None], within: float = 20) -> None:
    """Retry ``check`` (in a thread: it does blocking HTTP) until it passes or time runs out."""
    deadline = time.monotonic() + within
    while True:
        try:
            await asyncio.to_thread(check)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            return


REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "deploy" / "prometheus").glob("*.rules.yml"))
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
GRAFANA_VARS = {"$source": ".*", "$class": ".*", "$__rate_interval": "1m", "$__range": "1h",
                "${source}": ".*", "${class}": ".*"}  # fmt: skip


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL with Grafana variables substituted) for every target."""
    found = []

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for path in DASHBOARDS:
        for panel in walk(json.loads(path.read_text())["panels"]):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                if expr:
                    found.append((path.name, str(panel.get("title")), expr))
    return found


class TestScrapedByPrometheus:
    """A real Prometheus sees the stuck recalls, probe health and zeros for every class."""

    async def test_prometheus_sees_the_backlog(
        self, postfix: PrivatePostfix, running: Settings, tmp_path: Path
    ) -> None:
        """Stuck by class, oldest age, probe up: the core panel queries return the values."""
        postfix.inject([make_message(s) for s in SUBJECTS] + [make_message("Team lunch")])
        postfix.wait_for_queue(3)
        prometheus = PrivatePrometheus(
            tmp_path / "prom", targets=[running.http.listen], rule_files=RULE_FILES
        )
        prometheus.start()
        try:

            def stuck_recalls() -> None:
                result = prometheus.query(
                    'sum(mailwatch_stuck_messages{class="recall_emergency",source="mta1"})'
                )
                assert result
                assert float(result[0]["value"][1]) == 2

            await _eventually(stuck_recalls)
            up = prometheus.query('mailwatch_probe_up{source="mta1"}')
            assert float(up[0]["value"][1]) == 1
            oldest = prometheus.query(
                'mailwatch_oldest_message_age_seconds{class="recall_emergency",source="mta1"}'
            )
            assert float(oldest[0]["value"][1]) > 1
            zeros = prometheus.query('mailwatch_stuck_messages{class="safeguarding"}')
            assert [float(z["value"][1]) for z in zeros] == [0.0]
            general = prometheus.query('sum(mailwatch_messages{class="general",source="mta1"})')
            assert float(general[0]["value"][1]) == 1
            self._dashboards_evaluate(prometheus)
        finally:
            prometheus.stop()

    @staticmethod
    def _dashboards_evaluate(prometheus: PrivatePrometheus) -> None:
        """Every panel query evaluates; the core panels show the backlog just made."""
        queries = dashboard_queries()
        assert len(queries) > 20
        for dashboard, title, expr in queries:
            try:
                prometheus.query(expr)
            except PrometheusError as exc:
                pytest.fail(f"{dashboard} panel {title!r}: {exc}")
        by_title = {(d, t): e for d, t, e in queries}
        stuck = prometheus.query(by_title[("mailwatch-operations.json", "Stuck messages by class")])
        values = {r["metric"]["class"]: float(r["value"][1]) for r in stuck}
        assert values["recall_emergency"] == 2
        assert values["safeguarding"] == 0
        probes = prometheus.query(by_title[("mailwatch-operations.json", "Probes")])
        assert {r["metric"]["source"]: float(r["value"][1]) for r in probes}["mta1"] == 1
        oldest = prometheus.query(
            by_title[("mailwatch-operations.json", "Oldest message age by class vs SLA")]
        )
        assert any(r["metric"].get("class") == "recall_emergency" and float(r["value"][1]) > 1
                   for r in oldest)  # fmt: skip
        duty = prometheus.query(by_title[("mailwatch-duty-manager.json", "Stuck P1 messages")])
        assert float(duty[0]["value"][1]) == 2

    async def test_exposition_negotiation_and_no_personal_data(
        self, postfix: PrivatePostfix, running: Settings
    ) -> None:
        """Text and OpenMetrics formats are served; no subject, name or address appears."""
        postfix.inject([make_message(s, to="ppcs@justice.example") for s in SUBJECTS])
        postfix.wait_for_queue(2)
        base = f"http://{running.http.listen}"

        def scanned() -> None:
            _, _, text = _get(f"{base}/metrics")
            assert (
                'mailwatch_stuck_messages{class="recall_emergency",priority="P1",source="mta1"} 2.0'
                in text
            )

        await _eventually(scanned)
        status, content_type, text = await asyncio.to_thread(_get, f"{base}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        _, om_type, om_text = await asyncio.to_thread(
            _get, f"{base}/metrics", "application/openmetrics-text; version=1.0.0"
        )
        assert om_type.startswith("application/openmetrics-text")
        assert om_text.rstrip().endswith("# EOF")
        for secret in PERSONAL:
            assert secret not in text
            assert secret not in om_text
        _, _, ready = await asyncio.to_thread(_get, f"{base}/readyz")
        assert json.loads(ready) == {"ready": True}
