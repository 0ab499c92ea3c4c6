"""The training-run alert rules (k8s/monitoring/prometheus-rule.yaml), offline.

The manifest is checked against a PrometheusRule schema written from the operator's documented
fields; its rules are checked by Prometheus's own ``promtool`` (``check rules``, then ``test
rules`` on series taken from the ``/metrics`` of a real service that scored real traffic), and its
thresholds against the settings the dashboard's run view checks with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running

REPO = Path(__file__).resolve().parents[2]
RULE_FILE = REPO / "k8s" / "monitoring" / "prometheus-rule.yaml"
CANDIDATES = REPO / "examples" / "candidates"

# monitoring.coreos.com/v1 PrometheusRule, from the Prometheus Operator's API reference (PrometheusRuleSpec,
# RuleGroup, Rule); durations as Prometheus writes them.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STRINGS},
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": _STRINGS,
                                        "annotations": _STRINGS,
                                    },
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def _rule() -> dict[str, Any]:
    (document,) = list(yaml.safe_load_all(RULE_FILE.read_text()))
    return document


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _rule()["spec"]["groups"] for r in g["rules"] if "alert" in r}


def _expected(name: str, labels: dict[str, str], value: str) -> dict[str, Any]:
    """The alert as promtool should see it: our labels plus its own, annotations with the templates filled."""
    rule = _alerts()[name]
    annotations = {}
    for key, template in rule["annotations"].items():
        for label, v in labels.items():
            template = template.replace("{{ $labels." + label + " }}", v)
        annotations[key] = template.replace("{{ $value | humanizePercentage }}", value)
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return binary


def test_manifest_is_a_valid_prometheus_rule() -> None:
    jsonschema.Draft202012Validator(PROMETHEUS_RULE).validate(_rule())
    broken = _rule()
    broken["spec"]["groups"][0]["rules"][0]["fro"] = "5m"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(PROMETHEUS_RULE).validate(broken)


def test_thresholds_are_the_ones_the_dashboard_checks() -> None:
    defaults = Settings()
    alerts = _alerts()
    assert set(alerts) == {"RLRFFlagShareHigh", "RLRFRolloutErrorShareHigh"}
    flag = re.fullmatch(
        r"max by \(run, flag\) \(rlrf_run_recent_flag_share\) > ([0-9.]+)", alerts["RLRFFlagShareHigh"]["expr"]
    )
    error = re.fullmatch(
        r'max by \(run\) \(rlrf_run_recent_status_share\{status="error"\}\) > ([0-9.]+)',
        alerts["RLRFRolloutErrorShareHigh"]["expr"],
    )
    assert flag and float(flag.group(1)) == defaults.alert_flag_share
    assert error and float(error.group(1)) == defaults.alert_error_share


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rlrf.rules.yml"
    rules.write_text(yaml.safe_dump(_rule()["spec"]))
    proc = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 2 rules found" in proc.stdout


def test_alert_fires_on_the_series_a_real_service_exports(
    settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    """Real traffic in, /metrics out, promtool evaluates our rules on those very values."""
    promtool = _promtool()
    reference = (REPO / "examples/reference.svg").read_text()
    hacked = [(CANDIDATES / n).read_text() for n in ("01_exact.txt", "05_tiny_viewbox.txt", "05_tiny_viewbox.txt")]
    healthy = [(CANDIDATES / n).read_text() for n in ("01_exact.txt", "02_recoloured.txt", "03_shifted.txt")]
    with running(create_app(settings, pipeline)) as base:
        for step in range(3):
            for run_id, completions in (("hacking", hacked), ("healthy", healthy)):
                body = {"reference": {"svg": reference}, "completions": completions, "step": step, "run_id": run_id}
                assert httpx.post(f"{base}/score", json=body, timeout=60).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=10).text
    series = []
    for family in text_string_to_metric_families(text):
        if family.name in ("rlrf_run_recent_flag_share", "rlrf_run_recent_status_share"):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                series.append({"series": f"{sample.name}{{{labels}}}", "values": f"{sample.value}x20"})
    assert any('flag="tiny_viewbox",run="hacking"' in s["series"] for s in series)

    rules = tmp_path / "rlrf.rules.yml"
    rules.write_text(yaml.safe_dump(_rule()["spec"]))
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "RLRFFlagShareHigh", "exp_alerts": []},  # not yet: `for: 5m`
                    {
                        "eval_time": "10m",
                        "alertname": "RLRFFlagShareHigh",
                        "exp_alerts": [
                            _expected("RLRFFlagShareHigh", {"run": "hacking", "flag": "tiny_viewbox"}, "66.67%")
                        ],
                    },
                    {"eval_time": "10m", "alertname": "RLRFRolloutErrorShareHigh", "exp_alerts": []},
                ],
            }
        ],
    }
    test_file = tmp_path / "rlrf.test.yml"
    test_file.write_text(yaml.safe_dump(test))
    proc = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_error_alert_fires_on_a_high_error_share(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = tmp_path / "rlrf.rules.yml"
    rules.write_text(yaml.safe_dump(_rule()["spec"]))
    share = 'rlrf_run_recent_status_share{instance="a",run="r",status="error"}'
    test = {
        "rule_files": [str(rules)],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": share, "values": "0.01x5 0.2x15"},
                    {"series": share.replace('"a"', '"b"'), "values": "0x20"},  # another API replica
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "RLRFRolloutErrorShareHigh", "exp_alerts": []},
                    {"eval_time": "9m", "alertname": "RLRFRolloutErrorShareHigh", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "RLRFRolloutErrorShareHigh",
                        "exp_alerts": [_expected("RLRFRolloutErrorShareHigh", {"run": "r"}, "20%")],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rlrf.test.yml"
    test_file.write_text(yaml.safe_dump(test))
    proc = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
