"""The deployment artefacts: Prometheus config and rules, Alertmanager config, Grafana dashboards.

Runs the real ``promtool`` and ``amtool`` (Debian packages ``prometheus`` and
``prometheus-alertmanager``, installed by ``scripts/bootstrap``): a missing tool fails the test,
it is never skipped. The dashboards are checked statically; their PromQL is parsed by promtool
(Prometheus 2.42's promtool has no ``promql format``, so the expressions are written into a
temporary rules file as recording rules and ``promtool check rules`` parses them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailwatch.config.classes import shipped_classes
from mailwatch.config.settings import load as load_config
from mailwatch.core.durations import Duration
from mailwatch.core.snapshot import OutcomeTotals, SourceHealth, StoreHealth, build_snapshot
from mailwatch.web.metrics import MailwatchCollector

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
ALERT_RULES = PROMETHEUS / "mailwatch.rules.yml"
SLA_RULES = PROMETHEUS / "mailwatch-sla.rules.yml"
GENERATOR = PROMETHEUS / "generate_sla_rules.py"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = REPO / "dashboards"
DASHBOARD_UIDS = {
    "mailwatch-operations.json": "mailwatch-operations",
    "mailwatch-duty-manager.json": "mailwatch-duty-manager",
}
RUNBOOKS = REPO / "docs" / "runbooks.md"

NOT_YET_EXPORTED: frozenset[str] = frozenset()
"""Series planned but not exported yet (none at present): allowed only in clearly marked
dashboard rows and never in alert rules."""
NOT_YET_ROW = "Not yet exported"
SAFE_LABELS = frozenset({"source", "class", "priority", "sla", "path", "job", "instance"})
"""Labels an annotation may show: none can carry a subject, an address or a case reference."""
EXPECTED_ALERTS = frozenset({
    "MailwatchP1Stuck", "MailwatchOldestOverSLA", "MailwatchBacklogGrowing", "MailwatchBounces",
    "MailwatchCanaryLost", "MailwatchProbeDown", "MailwatchBlind", "MailwatchAbsent",
    "MailwatchMailSystemDown", "MailwatchStoreFailing", "MailwatchChangeDetectionMissed",
})  # fmt: skip

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_METRIC = re.compile(r"(?<![\w:])(mailwatch[_:][A-Za-z0-9_:]*)")
_GRAFANA_DURATION = re.compile(r"\$\{?__(?:rate_interval|interval|range)\}?")
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def tool(name: str) -> str:
    """The path of ``name``, failing (not skipping) the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/bootstrap (Debian 12 packages"
                    " prometheus and prometheus-alertmanager); CI installs them")  # fmt: skip
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def metric_names(expr: str) -> set[str]:
    """The mailwatch metric names an expression selects (string literals ignored)."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def rule_exprs(text: str) -> list[str]:
    """The ``expr`` of every rule in a rules file written like ours (one-line or ``|``)."""
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not match:
            continue
        indent, value = match.groups()
        if value not in ("|", "|-", ">", ">-"):
            exprs.append(value)
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= len(indent):
                break
            block.append(following.strip())
        exprs.append("\n".join(block).strip())
    return exprs


def alert_blocks(text: str) -> dict[str, list[str]]:
    """Each alert rule's text (a name may have several rules), keyed by alert name."""
    blocks: dict[str, list[str]] = {}
    for chunk in re.split(r"\n(?=\s*- (?:alert|record):)", text)[1:]:
        match = re.match(r"\s*- alert:\s*(\w+)", chunk)
        if match:
            blocks.setdefault(match.group(1), []).append(chunk)
    return blocks


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def exported_metric_names() -> set[str]:
    """Every series name mailwatch's collector exports, as Prometheus stores it."""
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    snapshot = build_snapshot(
        now=now,
        classes=(),
        verdicts={"mta1": ()},
        queues={},
        outcomes=OutcomeTotals(),
        histories={},
        health={"mta1": SourceHealth(up=True, last_duration_seconds=0.1, last_success=now)},
        store=StoreHealth(),
    )
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names = set()
    for family in MailwatchCollector(lambda: snapshot).collect():
        names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


SCRAPE_LABELS = {"job", "instance", "le"}
"""Labels every scraped series has (``le``: each histogram bucket)."""


def exported_labels() -> dict[str, set[str]]:
    """The labels of each series mailwatch exports, from samples of a snapshot with classes."""
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    snapshot = build_snapshot(
        now=now,
        classes=load_config(None).classifier().all_classes,
        verdicts={"mta1": ()},
        queues={"mta1": ("deferred",)},
        outcomes=OutcomeTotals(),
        histories={},
        health={"mta1": SourceHealth(up=True, last_duration_seconds=0.1, last_success=now)},
        store=StoreHealth(),
    )
    labels: dict[str, set[str]] = {}
    for family in MailwatchCollector(lambda: snapshot).collect():
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, rows' nested (collapsed) panels included."""
    stack = list(board.get("panels", []))
    while stack:
        panel = stack.pop(0)
        yield panel
        stack[:0] = panel.get("panels", [])


def query_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that show data (everything but rows)."""
    return (p for p in panels(board) if p.get("type") != "row")


def promql_for_parsing(expr: str) -> str:
    """A Grafana query with its variables replaced by values PromQL accepts."""
    return _GRAFANA_VARIABLE.sub(".*", _GRAFANA_DURATION.sub("5m", expr))


def sla_json(*args: str | Path) -> list[dict[str, Any]]:
    """The generator's classes (``--json``) for the given extra arguments."""
    result = run(sys.executable, GENERATOR, "--json", *args)
    assert result.returncode == 0, output(result)
    classes: list[dict[str, Any]] = json.loads(result.stdout)
    return classes


def longest_business_day_span(days: int) -> float:
    """The longest clock span of ``days`` business days per mailwatch, over a week of starts."""
    monday = datetime(2026, 11, 2, tzinfo=UTC)
    duration = Duration(business_days=days)
    starts = (monday + timedelta(minutes=30 * i) for i in range(7 * 48))
    return max((duration.deadline_after(s) - s).total_seconds() for s in starts)


@pytest.fixture(name="promtool", scope="session")
def fixture_promtool() -> str:
    """The promtool executable."""
    return tool("promtool")


@pytest.fixture(name="amtool", scope="session")
def fixture_amtool() -> str:
    """The amtool executable."""
    return tool("amtool")


@pytest.fixture(name="dashboards", scope="session")
def fixture_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file, parsed, by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


@pytest.fixture(name="known_metrics", scope="session")
def fixture_known_metrics() -> set[str]:
    """Names a rule or dashboard may use: exported, planned, or recorded by our rules."""
    sla_rules = SLA_RULES.read_text(encoding="utf-8")
    recorded = set(re.findall(r"^\s*- record:\s*(\S+)", sla_rules, re.M))
    return exported_metric_names() | NOT_YET_EXPORTED | recorded


class TestPrometheusConfig:
    """deploy/prometheus/prometheus.yml."""

    def test_config_is_valid(self, promtool: str) -> None:
        """`promtool check config` passes, finding every rule file it names."""
        result = run(promtool, "check", "config", "--lint-fatal", CONFIG.relative_to(REPO))
        assert result.returncode == 0, output(result)
        assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout

    def test_config_loads_every_rules_file(self) -> None:
        """Every *.rules.yml in deploy/prometheus is listed in rule_files."""
        text = CONFIG.read_text(encoding="utf-8")
        listed = set(re.findall(r"^\s*-\s*(\S+\.rules\.yml)\s*$", text, re.M))
        assert listed == {p.name for p in RULE_FILES}

    def test_config_scrapes_mailwatch_every_15s(self) -> None:
        """Job mailwatch scrapes 127.0.0.1:9745 every 15s and alerts go to an Alertmanager."""
        text = CONFIG.read_text(encoding="utf-8")
        job = text.split("job_name: mailwatch", 1)[1]
        assert re.search(r"scrape_interval:\s*15s", job)
        assert '"127.0.0.1:9745"' in job
        assert re.search(r"alertmanagers:\s*\n\s*- static_configs:", text)


class TestRules:
    """deploy/prometheus/*.rules.yml and their promtool unit tests."""

    @pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
    def test_rules_file_is_valid(self, promtool: str, path: Path) -> None:
        """`promtool check rules` passes, lint errors included."""
        result = run(promtool, "check", "rules", "--lint-fatal", path.relative_to(REPO))
        assert result.returncode == 0, output(result)

    @pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
    def test_unit_tests_pass(self, promtool: str, path: Path) -> None:
        """`promtool test rules` passes."""
        result = run(promtool, "test", "rules", path.relative_to(REPO))
        assert result.returncode == 0, output(result)
        assert "SUCCESS" in result.stdout

    def test_alerts_are_the_expected_ones(self) -> None:
        """The rules define exactly the documented alerts."""
        assert set(alert_blocks(ALERT_RULES.read_text(encoding="utf-8"))) == EXPECTED_ALERTS

    def test_every_alert_is_tested_firing_and_not_firing(self) -> None:
        """Each alert has a unit-test case where it fires and one where it does not."""
        text = "\n".join(p.read_text(encoding="utf-8") for p in UNIT_TESTS)
        fires = set(re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\n", text))
        silent = set(re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\[\]", text))
        assert EXPECTED_ALERTS - fires == set(), "never tested firing"
        assert EXPECTED_ALERTS - silent == set(), "never tested not firing"

    def test_every_alert_has_severity_summary_description_and_runbook(self) -> None:
        """Each alert rule sets severity and the three annotations."""
        for name, blocks in alert_blocks(ALERT_RULES.read_text(encoding="utf-8")).items():
            for block in blocks:
                for key in ("severity:", "summary:", "description:", "runbook_url:"):
                    assert key in block, f"{name} has no {key}"

    def test_severities_are_page_or_ticket(self) -> None:
        """Severity is page or ticket (possibly chosen by priority in a template)."""
        values = re.findall(r"^\s*severity:\s*(.+)$", ALERT_RULES.read_text(encoding="utf-8"), re.M)
        assert values
        for value in values:
            words = set(re.findall(r"\b(page|ticket)\b", value))
            assert words, value
            assert re.sub(r"\{\{.*?\}\}|page|ticket|['\"]", "", value).strip() == "", value

    def test_runbook_urls_point_at_existing_sections(self) -> None:
        """Every runbook_url is docs/runbooks.md#anchor, and the section exists."""
        text = ALERT_RULES.read_text(encoding="utf-8")
        urls = re.findall(r"^\s+runbook_url:\s*(\S+)", text, re.M)
        headings = re.findall(r"^#{1,6}\s+(.+)$", RUNBOOKS.read_text(encoding="utf-8"), re.M)
        anchors = {github_anchor(h) for h in headings}
        assert len(urls) == sum(len(b) for b in alert_blocks(text).values())
        for url in urls:
            assert re.search(r"/docs/runbooks\.md#[\w-]+$", url), url
            assert url.rsplit("#", 1)[1] in anchors, url
        for name in EXPECTED_ALERTS:
            assert name.lower() in anchors, f"docs/runbooks.md has no section {name}"

    def test_annotations_show_only_safe_labels(self) -> None:
        """Templates use only source/class/priority/sla/path/job/instance, never all labels."""
        text = ALERT_RULES.read_text(encoding="utf-8")
        for template in re.findall(r"\{\{.*?\}\}", text):
            for ref in re.findall(r"\$labels\b(?:\.(\w+))?", template):
                assert ref in SAFE_LABELS, template
            assert not re.search(r"\$labels\s*\}\}|range\s+\$labels", template), template

    def test_rules_use_only_known_metrics(self, known_metrics: set[str]) -> None:
        """Every mailwatch series a rule reads is exported, planned, or recorded by us."""
        for path in RULE_FILES:
            text = path.read_text(encoding="utf-8")
            exprs = rule_exprs(text)
            assert len(exprs) == len(re.findall(r"^\s*- (?:alert|record):", text, re.M))
            for expr in exprs:
                assert metric_names(expr) <= known_metrics, expr

    def test_planned_metrics_are_not_alerted_on(self) -> None:
        """No alert rule reads a series mailwatch does not export yet."""
        text = ALERT_RULES.read_text(encoding="utf-8")
        for expr in rule_exprs(text):
            assert not metric_names(expr) & NOT_YET_EXPORTED, expr


class TestSlaGenerator:
    """deploy/prometheus/generate_sla_rules.py and the file it renders."""

    def test_committed_file_is_what_the_generator_renders(self) -> None:
        """mailwatch-sla.rules.yml equals the generator's output for the taxonomy."""
        result = run(sys.executable, GENERATOR)
        assert result.returncode == 0, output(result)
        assert SLA_RULES.read_text(encoding="utf-8") == result.stdout, (
            "deploy/prometheus/mailwatch-sla.rules.yml is stale: run python3"
            " deploy/prometheus/generate_sla_rules.py --output"
            " deploy/prometheus/mailwatch-sla.rules.yml"
        )

    def test_check_mode_agrees(self, tmp_path: Path) -> None:
        """--check exits 0 on the committed file and 1 on a stale copy."""
        assert run(sys.executable, GENERATOR, "--check", SLA_RULES).returncode == 0
        stale = tmp_path / "stale.rules.yml"
        stale.write_text(SLA_RULES.read_text(encoding="utf-8").replace("600", "601", 1))
        result = run(sys.executable, GENERATOR, "--check", stale)
        assert result.returncode == 1, output(result)
        assert "out of date" in result.stderr

    def test_every_class_has_one_sla_and_one_info_series(self) -> None:
        """Each shipped class is rendered once as class_sla_seconds and once as class_info."""
        text = SLA_RULES.read_text(encoding="utf-8")
        for record in ("mailwatch:class_sla_seconds", "mailwatch:class_info"):
            rendered = re.findall(rf"- record: {record}\n.*\n.*\n\s*class: \"(\w+)\"", text)
            assert sorted(rendered) == sorted(shipped_classes()), record

    def test_slas_and_priorities_agree_with_mailwatch(self) -> None:
        """Seconds and priority per class match mailwatch's own parsing of the taxonomy."""
        shipped = shipped_classes()
        rendered = sla_json()
        assert [c["name"] for c in rendered] == list(shipped)
        for cls in rendered:
            config = shipped[cls["name"]]
            assert cls["priority"] == str(config.priority)
            assert cls["sla"] == str(config.stuck_after)
            duration = config.stuck_after
            if duration.business_days:
                assert cls["seconds"] == longest_business_day_span(duration.business_days)
            else:
                assert cls["seconds"] == duration.seconds

    def test_business_days_render_as_their_longest_span(self, tmp_path: Path) -> None:
        """N business days render as the longest span mailwatch's deadlines allow (N = 1..10)."""
        taxonomy = tmp_path / "taxonomy.toml"
        taxonomy.write_text(
            "".join(
                f'[classes.c{n}]\npriority = "P3"\nstuck_after = "{n} business days"\n'
                for n in range(1, 11)
            )
        )
        for n, cls in enumerate(sla_json("--taxonomy", taxonomy), start=1):
            assert cls["seconds"] == longest_business_day_span(n), n

    def test_site_config_overlays_the_taxonomy(self, tmp_path: Path) -> None:
        """--config replaces a shipped class and adds site classes, as mailwatch does."""
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            '[classes.recall_emergency]\npriority = "P1"\nstuck_after = "5m"\n'
            '[classes.parole_board]\npriority = "p2"\nstuck_after = 5400\n'
        )
        rendered = {c["name"]: c for c in sla_json("--config", config)}
        assert rendered["recall_emergency"]["seconds"] == 300
        assert rendered["parole_board"] == {
            "name": "parole_board", "priority": "P2", "sla": "5400s", "seconds": 5400
        }  # fmt: skip
        assert len(rendered) == len(shipped_classes()) + 1
        config.write_text("include_default_classes = false\n" + config.read_text())
        assert [c["name"] for c in sla_json("--config", config)] == [
            "recall_emergency", "parole_board"
        ]  # fmt: skip

    def test_bad_taxonomy_fails_with_the_key(self, tmp_path: Path) -> None:
        """An unparsable SLA exits 2 naming the key, and writes nothing."""
        taxonomy = tmp_path / "taxonomy.toml"
        taxonomy.write_text('[classes.bad]\npriority = "P1"\nstuck_after = "soon"\n')
        out = tmp_path / "out.yml"
        result = run(sys.executable, GENERATOR, "--taxonomy", taxonomy, "--output", out)
        assert result.returncode == 2, output(result)
        assert "classes.bad.stuck_after" in result.stderr
        assert not out.exists()


class TestAlertmanager:
    """deploy/alertmanager/alertmanager.yml."""

    def test_config_is_valid(self, amtool: str) -> None:
        """`amtool check-config` passes."""
        result = run(amtool, "check-config", ALERTMANAGER.relative_to(REPO))
        assert result.returncode == 0, output(result)
        assert "SUCCESS" in result.stdout

    @pytest.mark.parametrize(
        ("labels", "receivers"),
        [
            ("alertname=MailwatchP1Stuck severity=page priority=P1 class=recall_emergency",
             "duty-managers"),
            ("alertname=MailwatchOldestOverSLA severity=page priority=P1 class=safeguarding",
             "duty-managers"),
            ("alertname=MailwatchBacklogGrowing severity=ticket priority=P1 class=recall_standard",
             "duty-managers"),
            ("alertname=MailwatchBacklogGrowing severity=ticket priority=P2 class=allocation",
             "ops"),
            ("alertname=MailwatchOldestOverSLA severity=ticket priority=P3 class=court_report",
             "ops"),
            ("alertname=MailwatchBounces severity=page priority=P1 class=recall_standard",
             "duty-managers"),
            ("alertname=MailwatchBounces severity=ticket priority=P2 class=allocation", "ops"),
            ("alertname=MailwatchCanaryLost severity=ticket path=mta1-to-imap", "ops"),
            ("alertname=MailwatchProbeDown severity=ticket", "ops"),
            ("alertname=MailwatchBlind severity=page reason=no_success_for_10m",
             "ops,duty-managers"),
            ("alertname=MailwatchAbsent severity=page", "ops,duty-managers"),
        ],
        ids=lambda v: v.split()[0].removeprefix("alertname=") if " " in v else v,
    )  # fmt: skip
    def test_routing(self, amtool: str, labels: str, receivers: str) -> None:
        """P1 and pages reach the duty managers, the rest ops; mailwatch faults reach both."""
        result = run(
            amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
            f"--verify.receivers={receivers}", "source=mta1", *labels.split(),
        )  # fmt: skip
        assert result.returncode == 0, output(result)
        assert result.stdout.strip() == receivers

    def test_routes_group_by_alertname_class_source(self) -> None:
        """Notifications are grouped by alertname, class and source."""
        text = ALERTMANAGER.read_text(encoding="utf-8")
        assert re.search(r"^  group_by: \[alertname, class, source\]$", text, re.M)

    def test_inhibit_rules_name_real_alerts_and_match_on_source(self) -> None:
        """Every alert an inhibit rule names exists, and rules match on the same source."""
        text = ALERTMANAGER.read_text(encoding="utf-8")
        inhibit = text.split("inhibit_rules:", 1)[1].split("receivers:", 1)[0]
        assert set(re.findall(r"Mailwatch\w+", inhibit)) <= EXPECTED_ALERTS
        equals = re.findall(r"equal: \[(.*)\]", inhibit)
        assert equals
        assert all("source" in e.split(", ") for e in equals)
        blind = inhibit.split('alertname="MailwatchBlind"', 1)[1]
        for target in ("MailwatchP1Stuck", "MailwatchOldestOverSLA", "MailwatchBacklogGrowing"):
            assert target in blind.split("equal:", 1)[0]


class TestDashboards:
    """dashboards/*.json."""

    def test_expected_dashboards_with_stable_uids(self, dashboards: dict[str, Any]) -> None:
        """Both dashboards exist, parse, and keep their uids (links and provisioning use them)."""
        assert {name: board.get("uid") for name, board in dashboards.items()} == DASHBOARD_UIDS
        for board in dashboards.values():
            assert 36 <= board["schemaVersion"] <= 41
            assert board["title"]
            assert board["id"] is None

    def test_datasource_variable(self, dashboards: dict[str, Any]) -> None:
        """Each dashboard has a datasource variable of type datasource (prometheus)."""
        for name, board in dashboards.items():
            variables = {v["name"]: v for v in board["templating"]["list"]}
            assert variables["datasource"]["type"] == "datasource", name
            assert variables["datasource"]["query"] == "prometheus", name

    def test_every_panel_and_target_uses_the_datasource_variable(
        self, dashboards: dict[str, Any]
    ) -> None:
        """Every panel, target and query variable reads from ${datasource}."""
        for name, board in dashboards.items():
            for panel in query_panels(board):
                assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
                assert panel["targets"], (name, panel["title"])
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            for variable in board["templating"]["list"]:
                if variable["type"] == "query":
                    assert variable["datasource"]["uid"] == "${datasource}", variable["name"]

    def test_every_panel_has_a_unit_and_thresholds(self, dashboards: dict[str, Any]) -> None:
        """fieldConfig.defaults has a unit and threshold steps on every panel."""
        for name, board in dashboards.items():
            for panel in query_panels(board):
                defaults = panel["fieldConfig"]["defaults"]
                assert defaults.get("unit"), (name, panel["title"])
                assert defaults["thresholds"]["steps"], (name, panel["title"])

    def test_panel_ids_are_unique_and_titles_described(self, dashboards: dict[str, Any]) -> None:
        """Panel ids are unique per dashboard; every data panel has a title and description."""
        for name, board in dashboards.items():
            ids = [p["id"] for p in panels(board)]
            assert len(ids) == len(set(ids)), name
            for panel in query_panels(board):
                assert panel["title"], (name, panel["id"])
                assert panel.get("description"), (name, panel["title"])

    def test_operations_variables(self, dashboards: dict[str, Any]) -> None:
        """Operations has source and class variables: label_values, multi, include all."""
        variables = {
            v["name"]: v for v in dashboards["mailwatch-operations.json"]["templating"]["list"]
        }
        for name in ("source", "class"):
            variable = variables[name]
            assert variable["type"] == "query"
            assert _LABEL_VALUES.match(variable["definition"])
            assert variable["multi"] is True
            assert variable["includeAll"] is True

    def test_queries_parse(self, promtool: str, dashboards: dict[str, Any], tmp_path: Path) -> None:
        """Every panel query and variable selector parses as PromQL (promtool check rules)."""
        rules: list[dict[str, str]] = []
        where: dict[str, str] = {}
        for name, board in dashboards.items():
            exprs = [
                (f"{panel['title']} {target['refId']}", target["expr"])
                for panel in query_panels(board)
                for target in panel["targets"]
            ]
            for variable in board["templating"]["list"]:
                if variable["type"] == "query":
                    match = _LABEL_VALUES.match(variable["definition"])
                    assert match, variable["definition"]
                    exprs.append((f"${variable['name']}", match.group(1)))
            for label, expr in exprs:
                record = f"dashboard:query_{len(rules)}"
                where[record] = f"{name}: {label}"
                rules.append({"record": record, "expr": promql_for_parsing(expr)})
        path = tmp_path / "dashboard-queries.rules.yml"  # JSON is YAML
        path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = run(promtool, "check", "rules", path)
        assert result.returncode == 0, f"{output(result)}\nrecords: {json.dumps(where, indent=1)}"
        assert f"SUCCESS: {len(rules)} rules found" in result.stdout

    def test_queries_use_only_known_metrics(
        self, dashboards: dict[str, Any], known_metrics: set[str]
    ) -> None:
        """Every mailwatch series a panel reads is exported, planned, or recorded by our rules."""
        for name, board in dashboards.items():
            for panel in query_panels(board):
                for target in panel["targets"]:
                    unknown = metric_names(target["expr"]) - known_metrics
                    assert not unknown, (name, panel["title"], unknown)

    def test_grouping_labels_are_labels_of_the_series(self, dashboards: dict[str, Any]) -> None:
        """A query on one exported series groups only by labels it has (or the scrape's).

        E.g. the operations board splits bounces by the message's ``priority``: the exported
        ``mailwatch_bounced_total`` must carry it.
        """
        labels = exported_labels()
        checked = 0
        for name, board in dashboards.items():
            for panel in query_panels(board):
                for target in panel["targets"]:
                    (metric, *others) = sorted(metric_names(target["expr"])) or [""]
                    if others or metric not in labels:
                        continue  # joins and recorded series: promtool's unit tests cover them
                    for group in re.findall(r"\bby \(([^)]*)\)", target["expr"]):
                        wanted = {g.strip() for g in group.split(",") if g.strip()}
                        assert wanted <= labels[metric] | SCRAPE_LABELS, (name, panel["title"])
                        checked += 1
        assert checked
        assert {"class", "priority", "dsn_class"} <= labels["mailwatch_bounced_total"]
        assert {"class", "priority"} <= labels["mailwatch_expired_total"]

    def test_planned_metrics_only_in_the_not_yet_exported_row(
        self, dashboards: dict[str, Any]
    ) -> None:
        """Panels on not-yet-exported series sit in the marked row, and only those do."""
        for name, board in dashboards.items():
            rows = [p for p in board["panels"] if p.get("type") == "row"]
            marked = [r for r in rows if r["title"].startswith(NOT_YET_ROW)]
            inside = {id(p) for r in marked for p in r["panels"]}
            for panel in query_panels(board):
                uses = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
                planned = bool(uses & NOT_YET_EXPORTED)
                assert planned == (id(panel) in inside), (name, panel["title"])
                if planned:
                    assert "NOT YET EXPORTED" in panel["description"], panel["title"]

    def test_planned_metrics_are_not_exported_yet(self) -> None:
        """The planned series are really not exported (else move their panels and rules)."""
        assert not exported_metric_names() & NOT_YET_EXPORTED

    def test_duty_manager_view_is_p1_only(self, dashboards: dict[str, Any]) -> None:
        """Every duty-manager backlog query is restricted to priority P1."""
        board = dashboards["mailwatch-duty-manager.json"]
        probe_health = {"mailwatch_probe_up", "mailwatch_probe_last_success_timestamp_seconds"}
        for panel in query_panels(board):
            for target in panel["targets"]:
                if metric_names(target["expr"]) <= probe_health:
                    continue
                assert 'priority="P1"' in target["expr"], panel["title"]
