"""Shared helpers of the deployment tests: paths, PromQL extraction, the metric registry's series names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROM_DIR = DEPLOY / "prometheus"
METRIC = re.compile(r"\b(vigil_[a-z0-9_]+)")
SUFFIX = re.compile(r"_(bucket|sum|count|total|created)$")


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


def dashboard_exprs() -> list[str]:
    """Every PromQL ``expr`` of every dashboard JSON under deploy/ (the probe's rule)."""
    exprs: list[str] = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expr" and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for f in DEPLOY.rglob("*.json"):
        walk(json.loads(f.read_text()))
    return exprs


def rules() -> list[dict]:
    doc = yaml.safe_load((PROM_DIR / "rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def yaml_exprs() -> list[str]:
    """Every ``expr:`` line of every YAML file under deploy/ (the probe reads them the same way)."""
    out = []
    for f in DEPLOY.rglob("*.y*ml"):
        out += re.findall(r"^\s*expr:\s*(.+)$", f.read_text(errors="ignore"), re.M)
    return out


def registry_series() -> dict[str, set[str]]:
    """Series names service/metrics.py exports, by metric: counter -> _total, histogram -> _bucket/_sum/_count."""
    from prometheus_client.metrics import MetricWrapperBase

    import service.metrics as M

    out: dict[str, set[str]] = {}
    for obj in vars(M).values():
        if isinstance(obj, MetricWrapperBase):
            name, kind = obj._name, obj._type
            series = {"counter": {f"{name}_total"}, "gauge": {name},
                      "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"}}.get(kind, {name})
            out[name] = series | {f"{name}_created"} if kind in ("counter", "histogram") else series
    return out


def registry_labels() -> dict[str, tuple[str, ...]]:
    from prometheus_client.metrics import MetricWrapperBase

    import service.metrics as M

    return {obj._name: tuple(obj._labelnames) for obj in vars(M).values() if isinstance(obj, MetricWrapperBase)}
