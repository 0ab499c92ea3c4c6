"""k8s/monitoring: the ServiceMonitor and the Grafana dashboard, checked offline against what they watch.

Neither has a schema in kubernetes-validate, so each is checked three ways: against a JSON schema
written from its owner's documented format (the Prometheus Operator's ``monitoring.coreos.com/v1``
ServiceMonitor CRD; Grafana's dashboard JSON model), against the objects it points at (the
reward-api Service rendered by ``kubectl kustomize``), and against the real ``GET /metrics`` of the
service: every metric a panel queries must be one the service exposes, with the PromQL function its
type calls for (``rate`` of counters and histogram buckets, never of gauges).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.deploy.test_deploy import K8S, K8S_VERSIONS, load_documents, rendered

MONITORING = K8S / "monitoring"
DASHBOARD_FILE = MONITORING / "rlrf-dashboard.json"

_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"]}},
    },
}
# monitoring.coreos.com/v1 ServiceMonitor: the fields we use, typed as the Prometheus Operator's CRD
# (openAPIV3Schema of servicemonitors.monitoring.coreos.com) types them; anything else is refused so
# that a misspelt field fails here instead of being dropped by the API server.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
_TARGET = {
    "type": "object",
    "required": ["refId", "expr"],
    "properties": {
        "refId": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
    },
}
# Grafana's dashboard JSON model (Dashboards > JSON model; schemaVersion 39 is Grafana 10.x/11.x):
# the top-level fields Grafana requires to import a dashboard, and panels on its 24-column grid.
GRAFANA_DASHBOARD = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "time", "templating"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string"},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array", "items": {"type": "object", "required": ["name", "type"]}}},
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "type": {"enum": ["timeseries", "stat", "gauge", "bargauge", "table", "heatmap"]},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {
                            "h": {"type": "integer", "minimum": 1},
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                            "y": {"type": "integer", "minimum": 0},
                        },
                    },
                    "datasource": {"type": "object", "required": ["type", "uid"]},
                    "targets": {"type": "array", "minItems": 1, "items": _TARGET},
                },
            },
        },
    },
}


def monitoring() -> tuple[dict[str, Any], ...]:
    return rendered(MONITORING)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def of_kind(kind: str) -> dict[str, Any]:
    (resource,) = [r for r in monitoring() if r["kind"] == kind]
    return resource


def test_service_monitor_matches_the_operators_schema_and_the_api_service() -> None:
    monitor = of_kind("ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR)
    (service,) = [r for r in rendered(K8S / "base") if r["kind"] == "Service" and r["metadata"]["name"] == "reward-api"]
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_service_monitor_schema_catches_a_misspelt_field() -> None:
    monitor = json.loads(json.dumps(of_kind("ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_dashboard_config_map(version: str) -> None:
    config_map = of_kind("ConfigMap")
    kubernetes_validate.validate(config_map, version, strict=True)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # kube-prometheus-stack's sidecar
    assert json.loads(config_map["data"][DASHBOARD_FILE.name]) == dashboard()


def test_dashboard_matches_grafanas_model() -> None:
    board = dashboard()
    jsonschema.validate(board, GRAFANA_DASHBOARD)
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in board["templating"]["list"]}
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for uid in [panel["datasource"]["uid"], *(t.get("datasource", {}).get("uid", "") for t in panel["targets"])]:
            assert (uid.startswith("${") and uid[2:-1] in variables) or not uid.startswith("$"), uid


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Metric family name → type, from the real service's /metrics after it scored one group."""
    svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
    with running(create_app(Settings(workers=1))) as url:
        body = {"reference": {"svg": svg}, "completions": [svg, "no svg"]}
        assert httpx.post(f"{url}/score", json=body, timeout=60).status_code == 200
        text = httpx.get(f"{url}/metrics", timeout=10).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


_METRIC = re.compile(r"\b(rlrf_[a-z_]+)\b")


def _series(name: str, exposed: dict[str, str]) -> tuple[str, str]:
    """A queried series name → (its family, that family's type); KeyError when the service has none."""
    for suffix in ("_total", "_bucket", "_sum", "_count", ""):
        family = name.removesuffix(suffix) if suffix else name
        if family in exposed and name == family + suffix:
            return family, exposed[family]
    raise KeyError(name)


def test_every_panel_queries_metrics_the_service_exposes(exposed: dict[str, str]) -> None:
    queried = set()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            for name in _METRIC.findall(expr):
                try:
                    family, kind = _series(name, exposed)
                except KeyError:
                    pytest.fail(f"{panel['title']}: {name} is not in the service's /metrics ({sorted(exposed)})")
                queried.add(family)
                rated = re.search(rf"\b(rate|irate|increase)\(\s*{name}\b", expr) is not None
                if kind == "counter":
                    assert rated and name.endswith("_total"), (
                        f"{panel['title']}: a counter is read through rate(): {expr}"
                    )
                elif kind == "gauge":
                    assert not rated, f"{panel['title']}: rate() of a gauge: {expr}"
                elif kind == "histogram":
                    assert name.endswith("_bucket") and rated and "histogram_quantile" in expr and "le" in expr, expr
    # What an operator asks first: rollouts/s, statuses, stage latencies, queue depth.
    assert {"rlrf_rollouts_scored", "rlrf_rollout_status", "rlrf_stage_seconds", "rlrf_queue_depth"} <= queried


def test_the_monitoring_kustomization_is_separate_from_the_overlays() -> None:
    """A ServiceMonitor is refused where its CRD is missing: no overlay may pull it in."""
    for path in K8S.rglob("kustomization.yaml"):
        if path.parent != MONITORING:
            (kustomization,) = load_documents(path)
            assert not any("monitoring" in str(r) for r in kustomization.get("resources", [])), path
    assert Path(MONITORING / "servicemonitor.yaml").exists()
