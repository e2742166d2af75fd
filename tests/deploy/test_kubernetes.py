"""deploy/kubernetes renders (kubectl kustomize, or the Python subset renderer when kubectl is absent),
every manifest parses, and each promise of docs/deployment.md holds: probes, resources, HPA target, PDB,
the ConfigMap mounted as a directory (updates propagate, the watcher reloads), the Secret as env,
non-root read-only containers, and a grace period that covers preStop + shutdown_grace + the flush."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.stages.shutdown import drain
from tests.support.kustomize import KUBECTL, render, render_kubectl, render_python

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# The optional overlay: the base plus a ServiceMonitor (needs the Prometheus Operator's CRDs).
MONITORING = ROOT / "deploy" / "kubernetes-monitoring"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return by_kind(K8S)


@pytest.fixture(scope="module")
def monitored() -> dict[str, dict[str, Any]]:
    return by_kind(MONITORING)


def by_kind(directory: Path) -> dict[str, dict[str, Any]]:
    rendered = render(directory)
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in rendered:
        assert doc["kind"] not in by_kind, f"two {doc['kind']}s: the checks below assume one of each"
        by_kind[doc["kind"]] = doc
    return by_kind


def pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = docs["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = pod(docs)["containers"]
    result: dict[str, Any] = only
    return result


def gateway_config(docs: dict[str, dict[str, Any]]) -> Any:
    env = dict(docs["Secret"]["stringData"])
    env.update({e["name"]: e["value"] for e in container(docs).get("env", [])})
    (text,) = docs["ConfigMap"]["data"].values()
    return parse_config(text, env=env, source="deploy/kubernetes/gateway.yaml")


def test_every_file_parses_and_every_kind_is_there(docs: dict[str, dict[str, Any]]) -> None:
    for path in K8S.glob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
                         "Secret"}, "the base applies on a cluster without the Prometheus Operator's CRDs"
    for doc in docs.values():
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "llm-gateway"


def test_the_monitoring_overlay_adds_only_the_servicemonitor(docs: dict[str, dict[str, Any]],
                                                             monitored: dict[str, dict[str, Any]]) -> None:
    assert set(monitored) - set(docs) == {"ServiceMonitor"}
    for kind, doc in docs.items():
        assert monitored[kind] == doc, kind
    assert monitored["ServiceMonitor"]["metadata"]["labels"]["app.kubernetes.io/name"] == "llm-gateway"


def test_no_deprecated_kustomize_fields() -> None:
    for directory in (K8S, MONITORING):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert not {"commonLabels", "bases", "patchesStrategicMerge", "vars"} & set(kustomization), directory


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: only the Python renderer ran")
@pytest.mark.parametrize("directory", [K8S, MONITORING], ids=lambda d: d.name)
def test_the_python_renderer_agrees_with_kubectl(directory: Path) -> None:
    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    def spread_selectors(doc: dict[str, Any]) -> list[Any]:
        # kustomize before v3 leaves topology-spread selectors alone; later ones add commonLabels there.
        if doc["kind"] != "Deployment":
            return []
        constraints = doc["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        return [c.pop("labelSelector", None) for c in constraints]

    ours = sorted(render_python(directory), key=key)
    theirs = sorted(render_kubectl(directory), key=key)
    assert [key(d) for d in ours] == [key(d) for d in theirs]
    for mine, real in zip(ours, theirs, strict=True):
        spread_selectors(mine)
        labels = real["spec"]["template"]["metadata"]["labels"] if real["kind"] == "Deployment" else {}
        for selector in spread_selectors(real):
            assert selector["matchLabels"].items() <= labels.items()
        assert mine == real, key(mine)


def test_probes(docs: dict[str, dict[str, Any]]) -> None:
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ports
    assert ports["http"] == gateway_config(docs).server.port == 8080
    assert gateway_config(docs).server.host == "0.0.0.0"


def test_resources(docs: dict[str, dict[str, Any]]) -> None:
    resources = container(docs)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_non_root_and_read_only(docs: dict[str, dict[str, Any]]) -> None:
    pod_ctx = pod(docs)["securityContext"]
    ctx = container(docs)["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True and ctx["runAsNonRoot"] is True
    dockerfile_user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_user and pod_ctx["runAsUser"] == int(dockerfile_user.group(1)) != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp (multiprocess metrics, temporary files).
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_configmap_is_mounted_as_a_directory_so_updates_propagate(docs: dict[str, dict[str, Any]]) -> None:
    cm = docs["ConfigMap"]
    name = cm["metadata"]["name"]
    assert not re.search(r"-[a-z0-9]{10}$", name), "a hash suffix would restart pods instead of reloading"
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    (mount,) = [m for m in container(docs)["volumeMounts"] if volumes[m["name"]].get("configMap")]
    assert volumes[mount["name"]]["configMap"]["name"] == name
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    assert mount["mountPath"] == "/etc/gateway" and mount["readOnly"] is True
    args = container(docs)["args"]
    config_path = args[args.index("--config") + 1]
    assert Path(config_path).parent == Path(mount["mountPath"]) and Path(config_path).name in cm["data"]
    gateway_config(docs)  # the routing YAML in the ConfigMap is valid


def test_secret_reaches_the_container_as_environment(docs: dict[str, dict[str, Any]]) -> None:
    secret = docs["Secret"]
    refs = [e["secretRef"]["name"] for e in container(docs)["envFrom"]]
    assert refs == [secret["metadata"]["name"]]
    (text,) = docs["ConfigMap"]["data"].values()
    needed = set(re.findall(r"\$\{(\w+)\}", text))  # ${NAME} without a default must be set
    provided = set(secret["stringData"]) | {e["name"] for e in container(docs).get("env", [])}
    assert needed <= provided
    assert any(k.endswith("_API_KEY") for k in secret["stringData"])


def test_grace_period_covers_prestop_drain_and_flush(docs: dict[str, dict[str, Any]]) -> None:
    spec = pod(docs)
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3, "the endpoints controller needs a few seconds to take the pod out"
    flush = drain.__kwdefaults__["deadline_s"]
    grace = gateway_config(docs).server.shutdown_grace
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + grace + flush
    strategy = docs["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_hpa_on_cpu(docs: dict[str, dict[str, Any]]) -> None:
    hpa = docs["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", docs["Deployment"]["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_pdb_service_and_servicemonitor_select_the_pods(docs: dict[str, dict[str, Any]],
                                                        monitored: dict[str, dict[str, Any]]) -> None:
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = docs["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"], \
        "a node drain must be able to evict one pod"
    service = docs["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(docs)["ports"]}
    monitor = monitored["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")


def test_image_is_set_by_the_kustomization(docs: dict[str, dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (rule,) = kustomization["images"]
    assert container(docs)["image"] == f"{rule['newName']}:{rule['newTag']}"


def test_one_grace_period_arithmetic_in_the_docs_and_every_manifest(docs: dict[str, dict[str, Any]]) -> None:
    """preStop + shutdown_grace + 10: the same margin in the docs, the Deployment and compose."""
    margin = 10
    assert margin >= drain.__kwdefaults__["deadline_s"]
    pre_stop = float(container(docs)["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = gateway_config(docs).server.shutdown_grace
    assert pod(docs)["terminationGracePeriodSeconds"] == pre_stop + grace + margin
    page = (ROOT / "docs" / "deployment.md").read_text()
    assert f"preStop + shutdown_grace + {margin}`" in page
    assert f"terminationGracePeriodSeconds: {int(pre_stop + grace + margin)}`" in page
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    compose_config = parse_config((ROOT / "deploy" / "compose" / "gateway.yaml").read_text(),
                                  env={"GATEWAY_MASTER_KEY": "x"})
    stop = compose["x-gateway"]["stop_grace_period"]
    assert stop == f"{int(compose_config.server.shutdown_grace + margin)}s"
    assert f"stop_grace_period: {stop}" in page
