"""A small kustomize: just the fields ``k8s/`` uses, so the manifests can be checked without kubectl.

Supported in a ``kustomization.yaml``: ``resources`` (files and directories with their own
kustomization), ``namespace``, ``labels`` (``pairs`` on ``metadata.labels`` only), ``images``
(``name`` → ``newName``/``newTag``/``digest``), ``replicas`` and ``patches`` given by ``path``:
strategic-merge patches matched by their own kind and name, or applied to every resource a
``target`` selects (``kind``, ``name``, ``labelSelector`` of ``key=value`` pairs); ``$patch:
delete`` removes whole resources. Anything else raises ``Unsupported``, and so does a patch that
selects nothing, so a kustomization cannot silently outgrow this renderer. Where ``kubectl`` is
installed, the tests compare its ``kubectl kustomize`` output with ours.

Strategic merge, as kustomize applies it: maps merge key by key (``null`` deletes a key); lists of
the core API types merge by their merge key (containers by ``name``, volume mounts by
``mountPath``, ...); any other list, and every list of a custom resource, is replaced whole.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "replicas", "patches"}

# patchMergeKey of the list fields the manifests patch, from the Kubernetes API types.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}

_CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
}
_WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"}


class Unsupported(Exception):
    """The kustomization uses a field or patch form this renderer does not implement."""


def build(directory: Path) -> list[Resource]:
    """The resources ``kubectl kustomize DIRECTORY`` would print (as parsed YAML, unsorted)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _FIELDS
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += build(path) if path.is_dir() else load_documents(path)
    _check_unique(resources, directory)
    for patch in kustomization.get("patches", []):
        if set(patch) - {"path", "target"} or "path" not in patch:
            raise Unsupported(f"{directory}: patch {patch} (only `path:` strategic-merge patches, `target:`)")
        for document in load_documents(directory / patch["path"]):
            resources = _apply_patch(resources, document, patch.get("target"), directory / patch["path"])
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in _CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        if set(label) - {"pairs"}:
            raise Unsupported(f"{directory}: labels options {sorted(set(label) - {'pairs'})}")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in containers(resource):
                container["image"] = _retag(container["image"], image)
    for replicas in kustomization.get("replicas", []):
        targets = [r for r in resources if r["kind"] in _WORKLOADS and r["metadata"]["name"] == replicas["name"]]
        if not targets:
            raise Unsupported(f"{directory}: replicas for unknown workload {replicas['name']}")
        for target in targets:
            target["spec"]["replicas"] = replicas["count"]
    return resources


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document of ``path``."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def key(resource: Resource) -> tuple[str, str, str]:
    """kind, namespace, name: what identifies a rendered resource."""
    metadata = resource["metadata"]
    return resource["kind"], metadata.get("namespace", ""), metadata["name"]


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    """The pod template's spec of a workload, else None."""
    if resource["kind"] in _WORKLOADS:
        return resource["spec"]["template"]["spec"]
    return None


def containers(resource: Resource) -> list[dict[str, Any]]:
    """Containers and init containers of a workload's pod template."""
    spec = pod_spec(resource)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _check_unique(resources: list[Resource], directory: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for resource in resources:
        if key(resource) in seen:
            raise Unsupported(f"{directory}: {key(resource)} defined twice")
        seen.add(key(resource))


def _apply_patch(
    resources: list[Resource], patch: Resource, target: dict[str, str] | None, source: Path
) -> list[Resource]:
    if target is None:
        selected = [
            r for r in resources if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]
        ]
        if len(selected) != 1:
            raise Unsupported(f"{source}: {patch['kind']}/{patch['metadata']['name']} matches {len(selected)}")
    else:
        selected = [r for r in resources if _selected(r, target, source)]
        if not selected:
            raise Unsupported(f"{source}: target {target} selects nothing")
    directive = patch.get("$patch")
    if directive == "delete":
        return [r for r in resources if not any(r is s for s in selected)]
    if directive is not None:
        raise Unsupported(f"{source}: $patch: {directive}")
    out = []
    for resource in resources:
        if any(resource is s for s in selected):
            group = resource["apiVersion"].split("/")[0]
            resource = _merge(resource, patch, core="." not in group or group.endswith(".k8s.io"))
        out.append(resource)
    return out


def _selected(resource: Resource, target: dict[str, str], source: Path) -> bool:
    if set(target) - {"kind", "name", "labelSelector"}:
        raise Unsupported(f"{source}: target fields {sorted(set(target) - {'kind', 'name', 'labelSelector'})}")
    if "kind" in target and resource["kind"] != target["kind"]:
        return False
    if "name" in target and resource["metadata"]["name"] != target["name"]:
        return False
    labels = resource["metadata"].get("labels", {})
    for requirement in target.get("labelSelector", "").split(",") if "labelSelector" in target else []:
        label, equals, value = requirement.partition("=")
        if not equals or any(c in label + value for c in "!()<> "):
            raise Unsupported(f"{source}: label selector {requirement!r} (only key=value)")
        if labels.get(label) != value:
            return False
    return True


def _merge(base: Any, patch: Any, *, core: bool, field: str = "") -> Any:
    if isinstance(patch, dict):
        if "$patch" in patch:
            raise Unsupported(f"$patch inside {field or 'a resource'}")
        if not isinstance(base, dict):
            return {k: v for k, v in copy.deepcopy(patch).items() if v is not None}
        out = copy.deepcopy(base)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = _merge(base.get(name), value, core=core, field=name)
        return out
    if isinstance(patch, list) and isinstance(base, list) and core:
        merge_key = _MERGE_KEYS.get(field)
        if field == "ports" and patch and isinstance(patch[0], dict):
            merge_key = "containerPort" if "containerPort" in patch[0] else "port"
        if merge_key is not None:
            out = copy.deepcopy(base)
            for item in patch:
                position = next((i for i, old in enumerate(out) if old.get(merge_key) == item[merge_key]), None)
                if position is None:
                    out.append(copy.deepcopy(item))
                else:
                    out[position] = _merge(out[position], item, core=core, field=field)
            return out
    return copy.deepcopy(patch)


def _retag(image: str, rule: dict[str, str]) -> str:
    unknown = set(rule) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise Unsupported(f"images options {sorted(unknown)}")
    name, tag, digest = split_image(image)
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    tag = rule.get("newTag", tag)
    reference = name + (f":{tag}" if tag else "")
    return reference + (f"@{digest}" if digest and "newTag" not in rule else "")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry/name:tag@digest`` → (``registry/name``, tag or None, digest or None)."""
    image, _, digest = image.partition("@")
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :], digest or None
    return image, None, digest or None
