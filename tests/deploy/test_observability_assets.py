"""The Grafana dashboard and the alert rules query only metrics the code exports (or well-known external ones)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from tests.deploy.conftest import DEPLOY, REPO, Rendered

SOURCE_PACKAGES = ("convoscope", "producers", "processors", "sinks")
METRIC_TYPES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count"),
                "Summary": ("_sum", "_count", "")}
EXTERNAL_SERIES = {
    "up",  # Prometheus, per scrape target
    "process_cpu_seconds_total",  # prometheus_client's process collector, in every convoscope process
    "process_resident_memory_bytes",
    "kafka_consumergroup_lag",  # the Kafka exporter (Strimzi kafkaExporter)
}
# PromQL words that look like metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "rate", "increase", "delta", "histogram_quantile", "topk", "by", "and", "or", "unless", "on", "le",
    "label_values", "max", "min", "avg", "count", "without", "ignoring", "group_left", "group_right", "bool",
}


def exported_series() -> set[str]:
    """Every series name the code's prometheus_client metrics produce, found by reading the source."""
    series: set[str] = set()
    for package in SOURCE_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in METRIC_TYPES and node.args):
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    name = first.value.removesuffix("_total") if node.func.id == "Counter" else first.value
                    series.update(name + suffix for suffix in METRIC_TYPES[node.func.id])
    return series


def referenced_series(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", without_ranges))
    grouping = set(re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", without_ranges))
    labels = {label.strip() for group in grouping for label in group.split(",")}
    return {n for n in names - PROMQL_WORDS - labels if not re.fullmatch(r"[0-9.e]+", n)}


def dashboard_expressions() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "convoscope.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_code_exports_the_metrics_the_issue_names() -> None:
    series = exported_series()
    assert "convoscope_transcribe_final_delay_seconds_bucket" in series
    assert "convoscope_gateway_audio_bytes_total" in series
    assert "convoscope_store_records_total" in series


def test_dashboard_queries_only_exported_metrics() -> None:
    known = exported_series() | EXTERNAL_SERIES
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    used = set().union(*(referenced_series(e) for e in expressions))
    assert used - known == set(), "the dashboard queries series nobody exports"
    # Every convoscope metric family shows up somewhere on the dashboard.
    families = {re.sub(r"_(bucket|sum|count)$", "", s) for s in exported_series() if s.startswith("convoscope_")}
    shown = {re.sub(r"_(bucket|sum|count)$", "", s) for s in used}
    assert families - shown == set(), "metrics missing from deploy/dashboard.py"


def test_dashboard_layout_is_valid() -> None:
    board = json.loads((DEPLOY / "grafana" / "convoscope.json").read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_alert_rules_query_only_exported_metrics(rendered: dict[str, Rendered]) -> None:
    (rule,) = rendered["prod"].of_kind("PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    known = exported_series() | EXTERNAL_SERIES | recorded
    for r in rules:
        assert referenced_series(str(r["expr"])) - known == set(), r.get("alert") or r.get("record")
    alerts = {r["alert"] for r in rules if "alert" in r}
    runbook = (REPO / "docs" / "operations.md").read_text()
    for alert in alerts:
        assert f"### {alert}" in runbook, f"docs/operations.md does not explain {alert}"
    assert {"ConvoscopeConsumerLagGrowing", "ConvoscopeLatencySLOFastBurn", "ConvoscopeRecordsSkipped",
            "ConvoscopeASRBehindRealTime"} <= alerts


def test_reference_parser_sees_every_metric_in_a_query() -> None:
    """The checks above are only as good as this extraction."""
    expr = ('histogram_quantile(0.95, sum by (le, pod) (rate(convoscope_x_seconds_bucket{namespace="a", le="3.0"}'
            '[5m]))) / on (pod) group_left sum without (le) (up{job=~"convoscope-.*"})')
    assert referenced_series(expr) == {"convoscope_x_seconds_bucket", "up"}
    assert Path(DEPLOY / "grafana" / "convoscope.json").is_file()
