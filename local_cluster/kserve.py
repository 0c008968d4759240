"""KServe on the local control plane: the real KServe controller manager, reconciling InferenceServices in
RawDeployment mode (called Standard since v0.20.0: a Deployment and a Service, no Knative or Istio).

What a KServe install creates comes from the Go module at the pinned version, the one the binary is built
from: its CRDs (`config/crd/full`, less those CRDS_DIR already installed), the `inferenceservice-config`
ConfigMap (`config/configmap`) and its webhook configurations (`config/webhook`: the InferenceService
defaulter and validator, the pod mutator, and the validators of the other kinds), the webhooks pointed at
`https://127.0.0.1:<port>` as webhooks.py does. Only two settings of the ConfigMap change: Standard is the
default deployment mode, and no Ingress or Istio VirtualService is made, since neither runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from local_cluster import build, webhooks
from local_cluster.versions import load_versions

KSERVE_MODULE = "github.com/kserve/kserve"
# The manager reads its ConfigMap from $POD_NAMESPACE, `kserve` by default (pkg/constants/constants.go).
KSERVE_NAMESPACE = "kserve"
API_GROUP = "serving.kserve.io"
CONFIGMAP_NAME = "inferenceservice-config"
DEFAULT_DEPLOYMENT_MODE = "Standard"


def start_kserve(plane, binary: Path, ports, deadline: float) -> None:
    """The CRDs, ConfigMap and webhook configurations of KServe's install, then its controller manager."""
    # control_plane imports this module to call this function.
    from local_cluster.control_plane import crds_of

    module = build.module_dir(KSERVE_MODULE, load_versions()["KSERVE_VERSION"])
    kubectl = plane.kubectl_path
    installed = {c["metadata"]["name"] for path in plane.crds_dir.glob("*.yaml") for c in crds_of(path)}
    crds = [c for path in crd_files(module / "config/crd/full") for c in crds_of(path)]
    plane.apply_crds([c for c in crds if c["metadata"]["name"] not in installed], deadline)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NAMESPACE}}
    configmap = local_configmap(webhooks.render(kubectl, module / "config/configmap"))
    hooks = webhooks.on_loopback(
        webhooks.render(kubectl, module / "config/webhook"), ports.kserve_webhook, plane.pki.ca_cert
    )
    plane.apply_objects([namespace, configmap, *hooks])
    plane.start_controller(
        "kserve-controller-manager",
        [
            str(binary),
            f"--metrics-addr=127.0.0.1:{ports.kserve_metrics}",
            f"--health-probe-addr=127.0.0.1:{ports.kserve_probes}",
            # main.go takes the webhook server's port only; it listens on every interface.
            f"--webhook-port={ports.kserve_webhook}",
            "--leader-elect=false",
            "--zap-log-level=info",
        ],
        ports.kserve_probes,
        deadline,
        env={"POD_NAMESPACE": KSERVE_NAMESPACE},
    )


def crd_files(folder: Path) -> list[Path]:
    """The files that a kustomization of plain CRD files lists, its folders followed."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    if set(kustomization) - {"apiVersion", "kind", "resources"}:
        raise RuntimeError(f"{folder}/kustomization.yaml does more than list files: render it with kustomize")
    files = []
    for entry in kustomization.get("resources") or []:
        path = folder / entry
        files += crd_files(path) if path.is_dir() else [path]
    return files


def local_configmap(objects: list[dict]) -> dict:
    """The module's `inferenceservice-config`, with Standard (RawDeployment) as the default mode and no
    Ingress or VirtualService: the InferenceService is reached through its predictor Service."""
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == CONFIGMAP_NAME]
    data = dict(configmap["data"])
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = DEFAULT_DEPLOYMENT_MODE
    ingress = json.loads(data["ingress"])
    ingress.update(disableIngressCreation=True, disableIstioVirtualHost=True)
    data.update(deploy=json.dumps(deploy, indent=2), ingress=json.dumps(ingress, indent=2))
    metadata = {"name": CONFIGMAP_NAME, "namespace": KSERVE_NAMESPACE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
