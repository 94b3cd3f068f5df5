"""One definition of mailwatch's alerts: ``mailwatch/config/alerts.toml``.

mailwatch's default rules are read from it, ``deploy/prometheus/mailwatch.rules.yml`` is rendered
from it by ``deploy/prometheus/generate_alert_rules.py``, and the Alertmanager inhibit rules that
stop a duty manager being told twice (once by mailwatch's pushed alert, once by Prometheus) come
from it too. These tests fail when a committed file drifts from the table, or when the table
pairs a built-in rule with Prometheus alerts that cannot match it label for label. That the
inhibition works in a real Alertmanager is tested in
``tests/integration/test_alert_inhibition.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from mailwatch.config.alerts import alert_table, default_rules
from mailwatch.notify.alertmanager import LABELS

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "mailwatch" / "config" / "alerts.toml"
GENERATOR = REPO / "deploy" / "prometheus" / "generate_alert_rules.py"
ALERT_RULES = REPO / "deploy" / "prometheus" / "mailwatch.rules.yml"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the generator's command line from the repository root."""
    return subprocess.run([str(a) for a in args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def prometheus_alerts(table: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each Prometheus alert name of the table, with the table entry it belongs to."""
    return {rule["alert"]: name for name, entry in table.items()
            for rule in entry.get("prometheus", [])}  # fmt: skip


def test_committed_rules_are_what_the_table_renders() -> None:
    """mailwatch.rules.yml equals the generator's output for the shipped table."""
    result = run(sys.executable, GENERATOR)
    assert result.returncode == 0, result.stderr
    assert ALERT_RULES.read_text(encoding="utf-8") == result.stdout, (
        "deploy/prometheus/mailwatch.rules.yml is stale: run python3"
        " deploy/prometheus/generate_alert_rules.py --output deploy/prometheus/mailwatch.rules.yml"
    )


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    """--check exits 0 on the committed file and 1 on an edited copy."""
    assert run(sys.executable, GENERATOR, "--check", ALERT_RULES).returncode == 0
    stale = tmp_path / "mailwatch.rules.yml"
    stale.write_text(ALERT_RULES.read_text(encoding="utf-8").replace("for: 1m", "for: 2m", 1))
    result = run(sys.executable, GENERATOR, "--check", stale)
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_a_table_change_reaches_both_paths(tmp_path: Path) -> None:
    """Changing an alert's priorities in the table changes its Prometheus expression too."""
    edited = tmp_path / "alerts.toml"
    text = TABLE.read_text(encoding="utf-8")
    edited.write_text(text.replace('priorities = ["P1", "P2"]', 'priorities = ["P1"]', 1))
    result = run(sys.executable, GENERATOR, "--table", edited)
    assert result.returncode == 0, result.stderr
    assert 'mailwatch_undeliverable_messages{priority="P1"}' in result.stdout
    assert 'mailwatch_undeliverable_messages{priority=~"P1|P2"}' in ALERT_RULES.read_text()


def test_default_rules_are_the_tables_builtin_rules() -> None:
    """default_rules() has one rule per built-in table entry, with its severity and priorities."""
    table = alert_table()
    rules = {rule.name: rule for rule in default_rules()}
    assert list(rules) == [name for name, entry in table.items() if "builtin" in entry]
    assert tomllib.loads(TABLE.read_text(encoding="utf-8"))["alerts"] == table
    for name, rule in rules.items():
        assert rule.severity == table[name]["severity"]
        assert [str(p) for p in rule.priorities] == table[name].get("priorities", [])


def test_message_alerts_take_their_priorities_from_the_table() -> None:
    """A Prometheus rule of an alert with priorities selects them through @priority_matcher@."""
    for name, entry in alert_table().items():
        for rule in entry.get("prometheus", []):
            uses = "@priority_matcher@" in rule["expr"]
            assert uses == bool(entry.get("priorities")), name
            assert not re.search(r'priority=~?"P', rule["expr"]), name


def test_inhibits_name_real_prometheus_alerts_and_cover_their_own() -> None:
    """Each built-in rule replaces existing Prometheus alerts, its own ones included."""
    table = alert_table()
    known = prometheus_alerts(table)
    for name, entry in table.items():
        inhibits = entry.get("builtin", {}).get("inhibits", [])
        assert set(inhibits) <= set(known), name
        own = {rule["alert"] for rule in entry.get("prometheus", [])}
        if "builtin" in entry:
            assert own <= set(inhibits), f"{name} does not inhibit its own Prometheus alerts"


def test_pushed_alerts_carry_every_label_the_inhibition_compares() -> None:
    """The pushed alerts of mailwatch have the labels the inhibit rules' ``equal`` lists."""
    result = run(sys.executable, GENERATOR, "--inhibit-rules")
    assert result.returncode == 0, result.stderr
    for rule in yaml.safe_load(result.stdout):
        assert set(rule["equal"]) <= set(LABELS)


def test_alertmanager_config_carries_the_tables_inhibit_rules() -> None:
    """alertmanager.yml has exactly the inhibit rules the table implies for mailwatch's rules."""
    result = run(sys.executable, GENERATOR, "--inhibit-rules")
    assert result.returncode == 0, result.stderr
    expected = yaml.safe_load(result.stdout)
    builtin = {f'alertname="{name}"' for name, e in alert_table().items() if "builtin" in e}
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    shipped = [r for r in config["inhibit_rules"] if set(r["source_matchers"]) & builtin]
    assert shipped == expected
    assert result.stdout in ALERTMANAGER.read_text(encoding="utf-8")


def test_every_runbook_anchor_exists() -> None:
    """Each alert's runbook names a section of docs/runbooks.md."""
    headings = re.findall(r"^#{1,6}\s+(.+)$", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    for name, entry in alert_table().items():
        assert entry["runbook"] in anchors, name
        if "builtin" in entry:
            assert name in anchors, f"docs/runbooks.md has no section {name}"
