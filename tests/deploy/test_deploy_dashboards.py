"""Grafana dashboards: valid JSON, every panel titled, with a unit and a description, and every
PromQL metric (dashboards and rules) one that service/metrics.py exports."""

from __future__ import annotations

import importlib.util
import re

import pytest
from deploy_common import (DEPLOY, METRIC, SUFFIX, dashboard_exprs, dashboards, panels, registry_labels,
                           registry_series, rules, yaml_exprs)

PANEL_TYPES = {"timeseries", "table", "stat", "gauge", "bargauge", "state-timeline", "barchart", "text"}


def test_dashboards_are_up_to_date_with_their_generator():
    spec = importlib.util.spec_from_file_location("build_dashboards", DEPLOY / "grafana" / "build_dashboards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "run: python deploy/grafana/build_dashboards.py"
    assert set(dashboards()) == {"operations.json", "clinical.json"}


@pytest.mark.parametrize("name", ["operations.json", "clinical.json"])
def test_dashboard_structure(name):
    d = dashboards()[name]
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in d, f"{name}: no {key}"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for p in panels(d):
        where = f"{name} panel {p.get('id')} {p.get('title')!r}"
        assert p.get("type") in PANEL_TYPES, where
        assert isinstance(p.get("title"), str) and p["title"].strip(), f"{where}: no title"
        assert isinstance(p.get("description"), str) and len(p["description"]) > 20, f"{where}: no description"
        assert p.get("fieldConfig", {}).get("defaults", {}).get("unit"), f"{where}: no unit"
        gp = p.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(gp) and gp["x"] + gp["w"] <= 24, f"{where}: bad gridPos"
        ds = p.get("datasource", {})
        assert ds.get("uid") in ("vigil-prometheus", "vigil-postgres"), f"{where}: datasource {ds}"
        assert p.get("targets"), f"{where}: no query"
        for t in p["targets"]:
            assert t.get("refId") and t.get("datasource") == ds, where
            assert t.get("expr") if ds["uid"] == "vigil-prometheus" else t.get("rawSql"), where


def test_datasource_uids_are_provisioned():
    import yaml

    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/vigil.yaml").read_text())
    by_uid = {d["uid"]: d["type"] for d in prov["datasources"]}
    for name, d in dashboards().items():
        for p in panels(d):
            assert by_uid.get(p["datasource"]["uid"]) == p["datasource"]["type"], f"{name}: {p['title']}"
    dash = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/vigil.yaml").read_text())
    assert dash["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/vigil"


def test_operations_board_covers_the_issue():
    titles = " | ".join(p["title"].lower() for p in panels(dashboards()["operations.json"]))
    for want in ("sessions by status", "frames received", "samples received", "batch size", "inference latency",
                 "frame → prediction", "alerts per minute", "errors", "snapshot", "redis publish latency",
                 "redis publish failures"):
        assert want in titles, want
    clinical = {p["title"] for p in panels(dashboards()["clinical.json"])}
    assert "Time to acknowledgement" in clinical


def test_every_promql_metric_exists_in_the_registry():
    """The acceptance probe's rule: every vigil_* name in a PromQL expr under deploy/ is exported."""
    series = registry_series()
    valid = set().union(*series.values())
    exprs = dashboard_exprs() + yaml_exprs()
    names = {n for e in exprs for n in METRIC.findall(e)}
    assert names, "no PromQL expression names a vigil_* metric"
    assert not sorted(names - valid), f"not exported by service/metrics.py: {sorted(names - valid)}"
    # and, as the probe compares them, by stem
    assert {SUFFIX.sub("", n) for n in names} <= {SUFFIX.sub("", n) for n in valid} | set(series)


def test_promql_label_names_exist():
    """`by (...)` and `{label=...}` only use labels the metric has (plus job, instance, le)."""
    labels = registry_labels()
    for e in dashboard_exprs() + [r["expr"] for r in rules()]:
        metrics = {SUFFIX.sub("", n) for n in METRIC.findall(e)}
        if not metrics:
            continue
        allowed = {"job", "instance", "le", "__name__"}.union(*(labels.get(m, ()) for m in metrics))
        used = set()
        for group in re.findall(r"\bby\s*\(([^)]*)\)", e):
            used |= {x.strip() for x in group.split(",") if x.strip()}
        for sel in re.findall(r"vigil_[a-z0-9_]+\{([^}]*)\}", e):
            used |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
        assert used <= allowed, f"{e}: unknown labels {sorted(used - allowed)}"


def test_clinical_board_reads_only_store_tables():
    import service.store as S

    tables = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join(S._DDL)))
    for p in panels(dashboards()["clinical.json"]):
        sql = p["targets"][0]["rawSql"]
        ctes = set(re.findall(r"\b(\w+)\s+AS\s*\(", sql, re.I))  # WITH name AS (...), ...
        sql = re.sub(r"EXTRACT\s*\(\s*EPOCH\s+FROM", "EXTRACT(", sql, flags=re.I)
        used = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b(?!\s*\()", sql, re.I)) - ctes
        assert used and used <= tables, f"{p['title']}: {used - tables}"
