"""Prometheus config and alerting rules: promtool check and promtool unit tests (every rule firing
and not firing). Skipped, saying why, when promtool (Debian package `prometheus`) is absent."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from deploy_common import PROM_DIR, rules

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH (apt-get install prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", "rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_test_rules():
    r = promtool("test", "rules", "rules_test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_rule_is_unit_tested_firing_and_not_firing():
    tests = yaml.safe_load((PROM_DIR / "rules_test.yml").read_text())
    fired, quiet = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fired == set(), f"never tested firing: {sorted(names - fired)}"
    assert names - quiet == set(), f"never tested not firing: {sorted(names - quiet)}"


def test_rules_have_severity_and_annotations():
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"].get("summary") and r["annotations"].get("description"), r["alert"]
        assert "for" in r, r["alert"]


def test_service_alerts_cover_the_issue():
    names = {r["alert"] for r in rules()}
    for want in ("VigilTargetDown", "VigilFrameToPredictionLatencyHigh", "VigilRedisSnapshotsStalled",
                 "VigilProtocolErrorRateHigh", "VigilNoSessions", "VigilRedisPublishFailing"):
        assert want in names
