"""Rendering deploy/kubernetes: `kubectl kustomize` when kubectl is installed (Debian's
kubernetes-client, which .ci/run installs), else a small pure-Python renderer of the kustomize subset
the manifests use — resources (files, and directories holding a base), configMapGenerator (files) with
generatorOptions.disableNameSuffixHash, images, labels (metadata labels; with includeSelectors also
selectors, pod template labels and topology spread selectors) — so the checks never skip."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

KUBECTL = shutil.which("kubectl")
# Kinds whose selectors and pod templates commonLabels also labels (as kustomize does).
_SELECTOR_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def render_kubectl(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                         check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render_python(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "labels", "resources", "configMapGenerator", "generatorOptions", "images"}
    unknown = set(kustomization) - known
    assert not unknown, f"the Python renderer does not know {sorted(unknown)}: extend tests/support/kustomize.py"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        if (directory / resource).is_dir():
            docs += render_python(directory / resource)
            continue
        docs += [doc for doc in yaml.safe_load_all((directory / resource).read_text()) if doc]
    generators = kustomization.get("configMapGenerator", [])
    hashed = not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash", False)
    assert not (generators and hashed), "the Python renderer does not compute name hashes"
    for gen in generators:
        data = {Path(f).name: (directory / f).read_text() for f in gen.get("files", [])}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for rule in kustomization.get("labels", []):
        assert set(rule) <= {"pairs", "includeSelectors"}, f"the Python renderer does not know {sorted(rule)}"
        _label(docs, rule["pairs"], selectors=rule.get("includeSelectors", False))
    images = {i["name"]: i for i in kustomization.get("images", [])}
    for doc in docs:
        for container in _containers(doc):
            name, _, tag = container["image"].partition(":")
            if name in images:
                rule = images[name]
                container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return copy.deepcopy(docs)


def _label(docs: list[dict[str, Any]], labels: dict[str, str], *, selectors: bool) -> None:
    for doc in docs:
        doc.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        if not selectors:
            continue
        if doc["kind"] in _SELECTOR_KINDS:
            doc["spec"]["selector"].setdefault("matchLabels", {}).update(labels)
            doc["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
            for constraint in doc["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
                constraint.setdefault("labelSelector", {}).setdefault("matchLabels", {}).update(labels)
        elif doc["kind"] == "Service":
            doc["spec"].setdefault("selector", {}).update(labels)
        elif doc["kind"] == "PodDisruptionBudget":
            doc["spec"]["selector"].setdefault("matchLabels", {}).update(labels)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in _SELECTOR_KINDS:
        return []
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(directory: Path) -> list[dict[str, Any]]:
    return render_kubectl(directory) if KUBECTL else render_python(directory)
