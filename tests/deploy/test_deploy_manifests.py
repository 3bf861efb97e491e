"""compose, Kubernetes, nginx and Dockerfile: every YAML document parses and validates against a
schema (compose-spec through check-jsonschema's vendored schema, Kubernetes through
kubernetes-validate, when installed) and against a hand-written structural check that always runs;
the Dockerfile installs torch's pinned CPU build only."""

from __future__ import annotations

import re

import pytest
import yaml
from deploy_common import DEPLOY, ROOT

K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"


def k8s_docs() -> list[tuple[str, dict]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d is not None:
                out.append((f.name, d))
    return out


def by_kind(kind: str) -> list[dict]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


# ------------------------------------------------------------------ every YAML parses

def test_every_yaml_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.y*ml"))
    assert len(files) >= 10
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), f


# ------------------------------------------------------------------ compose

def test_compose_schema():
    pytest.importorskip("check_jsonschema", reason="check-jsonschema not installed (pip install check-jsonschema)")
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    jsonschema.validate(yaml.safe_load(COMPOSE.read_text()), schema)


def test_compose_structure():
    c = yaml.safe_load(COMPOSE.read_text())
    s = c["services"]
    assert {"vigil-a", "vigil-b", "nginx", "redis", "postgres", "prometheus", "grafana"} <= set(s)
    for name in ("vigil-a", "vigil-b"):
        v = s[name]
        assert v["build"]["dockerfile"] == "Dockerfile" and v["build"]["context"] == ".."
        env = v["environment"]
        assert all(k.startswith("VIGIL_") for k in env), "vigil is configured only through VIGIL_* variables"
        assert env["VIGIL_REDIS_URL"].startswith("redis://redis:")
        assert env["VIGIL_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["VIGIL_DATABASE_URL"]
        assert "VIGIL_API_TOKENS" in env, "bound to 0.0.0.0 the server accepts only token holders"
        assert v["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_cmd = " ".join(s["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--appendfsync everysec" in redis_cmd
    mounts = " ".join(s["prometheus"]["volumes"])
    assert "./prometheus/prometheus.yml:" in mounts and "./prometheus/rules.yml:" in mounts
    gmounts = " ".join(s["grafana"]["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning" in gmounts and "./grafana/dashboards:" in gmounts
    assert "./nginx.conf:/etc/nginx/nginx.conf" in " ".join(s["nginx"]["volumes"])
    for svc in s.values():  # every bind mount exists in the repository
        for m in svc.get("volumes", []):
            src = m.split(":")[0]
            if src.startswith("./"):
                assert (DEPLOY / src).exists(), src
    prom = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    vigil_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "vigil")
    assert vigil_job["static_configs"][0]["targets"] == ["vigil-a:8000", "vigil-b:8000"]


def test_no_real_secrets_committed():
    env = (DEPLOY / ".env.example").read_text()
    assert all("replace" in line.split("=", 1)[1] or line.split("=", 1)[0] in ("POSTGRES_DB", "POSTGRES_USER",
               "GRAFANA_DB_USER") for line in env.splitlines() if line and not line.startswith("#"))
    secret = by_kind("Secret")[0]
    assert all("REPLACE_ME" in v for v in secret["stringData"].values())


# ------------------------------------------------------------------ nginx

def test_nginx_routes_streams_by_session():
    conf = (DEPLOY / "nginx.conf").read_text()
    assert conf.count("{") == conf.count("}")
    stream = re.search(r"upstream vigil_stream \{(.*?)\}", conf, re.S).group(1)
    assert re.search(r"hash \$\w+ consistent;", stream)
    assert re.search(r"map \$arg_session \$vigil_route", conf)
    assert {"vigil-a:8000", "vigil-b:8000"} <= set(re.findall(r"server (\S+?:\d+)", stream))
    loc = re.search(r"location /v1/stream \{(.*?)\}", conf, re.S).group(1)
    assert "proxy_pass http://vigil_stream;" in loc and "Upgrade $http_upgrade" in loc
    assert "proxy_http_version 1.1" in loc and "proxy_read_timeout" in loc


# ------------------------------------------------------------------ Kubernetes

def test_k8s_schema():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (pip install kubernetes-validate)")
    for name, d in k8s_docs():
        if d["kind"] == "Kustomization":
            continue
        kv.validate(d, "1.30.0", strict=True)


def test_k8s_structure():
    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "Ingress"} <= kinds
    for name, d in docs:
        assert d.get("apiVersion") and d.get("kind"), name
        if d["kind"] != "Kustomization":
            assert d["metadata"]["name"], name
    kust = next(d for _, d in docs if d["kind"] == "Kustomization")
    assert {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"} == set(kust["resources"])

    dep = by_kind("Deployment")[0]
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert spec["securityContext"]["runAsNonRoot"] is True
    c = spec["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert c["lifecycle"]["preStop"]
    refs = {e.get("configMapRef", e.get("secretRef", {})).get("name") for e in c["envFrom"]}
    cm, secret = by_kind("ConfigMap")[0], by_kind("Secret")[0]
    assert refs == {cm["metadata"]["name"], secret["metadata"]["name"]}
    assert all(k.startswith("VIGIL_") for k in list(cm["data"]) + list(secret["stringData"]))
    assert {"VIGIL_API_TOKENS", "VIGIL_REDIS_URL", "VIGIL_DATABASE_URL"} <= set(secret["stringData"])
    assert "vigil-redis" in secret["stringData"]["VIGIL_REDIS_URL"]
    assert "vigil-postgres" in secret["stringData"]["VIGIL_DATABASE_URL"]
    assert {"vigil-redis", "vigil-postgres"} <= {d["metadata"]["name"] for d in by_kind("Service")}

    svc = next(d for d in by_kind("Service") if d["metadata"]["name"] == "vigil")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    hpa = by_kind("HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2

    stream = next(i for i in by_kind("Ingress") if any(
        p["path"] == "/v1/stream" for r in i["spec"]["rules"] for p in r["http"]["paths"]))
    assert stream["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$arg_session"
    assert stream["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "vigil"


# ------------------------------------------------------------------ Dockerfile

def pip_installs(text: str) -> list[list[str]]:
    """The argument lists of every `pip install` in the Dockerfile's RUN instructions."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.startswith("RUN "):
            for cmd in re.split(r"&&|;", line[4:]):
                words = cmd.split()
                if "pip" in words and "install" in words:
                    out.append(words[words.index("install") + 1:])
    return out


def test_dockerfile_installs_pinned_cpu_torch_then_the_project():
    text = (ROOT / "Dockerfile").read_text()
    installs = pip_installs(text)
    torch_at = [i for i, args in enumerate(installs) if any(a.lower().startswith("torch") for a in args)]
    assert len(torch_at) == 1, "torch is installed once, on its own"
    args = installs[torch_at[0]]
    assert [a for a in args if a.lower().startswith("torch")] == ["torch==2.13.0"], "torch pinned to 2.13.0"
    assert args[args.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu", "PyTorch's CPU index"
    project = installs[torch_at[0] + 1:]
    assert project and "." in project[0], "then the project, after torch"
    for a in (w for i in installs for w in i):
        assert not re.search(r"cu\d{2,3}|nvidia|extra-index-url", a, re.I), f"no CUDA build: {a}"
    assert re.search(r"torch==2\.13\.0", text.split("AS runtime")[0])
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root\b|0\b)\S+", text, re.M), "non-root"
    assert re.search(r"^HEALTHCHECK .*/readyz", text, re.M | re.S)
    assert re.search(r'^ENTRYPOINT \["vigil", "serve", "--host", "0\.0\.0\.0", "--port", "8000", "--data-dir", "/data"\]',
                     text, re.M)
    assert not re.search(r"^ENV .*VIGIL_", text, re.M), "no settings baked in: VIGIL_* only at run time"


def test_dockerignore_excludes_local_state():
    ignored = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    assert {".venv", ".git", "tests", "**/__pycache__", ".pytest_cache"} <= ignored
