"""The Prometheus alert rules (deploy/prometheus/rules/strata.yml) and their promtool tests.

`promtool check rules` validates the file, `promtool test rules` runs the unit tests in
deploy/prometheus/tests/. On top of that: every alert has a `for`, a severity, a summary, a
description and a runbook section in deploy/README.md; it reads only metrics the stack
exports; its tests have a case where it fires and one where it must not; and an alert whose
expression is broken so that it never fires makes the tests fail (each alert's firing case
really depends on its expression).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy import DEPLOY, _exported_metrics, _run, _tool, metric_names

RULES = DEPLOY / "prometheus" / "rules" / "strata.yml"
TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
README = DEPLOY / "README.md"
SEVERITIES = {"critical", "warning"}
#: Series Prometheus makes itself rather than a target exports.
SYNTHETIC = {"up"}


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _alert_tests() -> list[tuple[Path, dict[str, Any]]]:
    """Every `alert_rule_test` entry, with its file."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            out.extend((path, case) for case in test.get("alert_rule_test", []))
    return out


def test_rule_files_are_valid() -> None:
    promtool = _tool("promtool")
    result = _run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    assert TESTS
    for path in TESTS:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"] == [
            "../rules/strata.yml"
        ]
    result = _run([promtool, "test", "rules", *map(str, TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_for_severity_annotations_and_a_runbook() -> None:
    readme = README.read_text(encoding="utf-8")
    headings = set(re.findall(r"(?m)^#{2,5} (Strata\w+)\s*$", readme))
    alerts = _alerts()
    assert alerts
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name} has no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert "Runbook:" in annotations["description"], f"{name}: no runbook action"
        assert annotations["runbook"] == f"deploy/README.md#{name.lower()}", name
        assert name in headings, f"deploy/README.md has no runbook section for {name}"
    assert headings <= set(alerts), headings - set(alerts)


def test_rules_read_only_metrics_the_stack_exports() -> None:
    exported = _exported_metrics()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        names = metric_names(rule["expr"]) - SYNTHETIC
        assert names <= exported, (rule.get("alert") or rule["record"], names - exported)
        for used in re.findall(r"\bstrata:[a-z0-9_:]+", rule["expr"]):
            assert used in recorded, used
    for name in recorded:  # level:metric:operations
        assert re.fullmatch(r"strata:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for _, case in _alert_tests():
        (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == set(_alerts()), set(_alerts()) ^ firing
    assert silent == set(_alerts()), set(_alerts()) ^ silent


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_a_broken_expression_fails_the_tests(alert: str, tmp_path: Path) -> None:
    """The alert made never to fire: the promtool tests that name it must fail."""
    promtool = _tool("promtool")
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = "vector(1) < 0"
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / "strata.yml").write_text(yaml.safe_dump(data), encoding="utf-8")
    files = sorted({path for path, case in _alert_tests() if case["alertname"] == alert})
    for path in files:
        (tmp_path / "tests" / path.name).write_text(path.read_text(encoding="utf-8"))
    result = _run([promtool, "test", "rules", *(str(tmp_path / "tests" / p.name) for p in files)])
    assert result.returncode != 0, f"{alert}: its tests pass with an expression that never fires"
    assert f"alertname: {alert}," in result.stdout + result.stderr
