"""Kubeflow Trainer v2 on the local control plane: the JobSet controller and the Trainer controller manager.

Each runs from its own binary with a configuration file written here: leader election off, its servers on
127.0.0.1, and its own certificate management off (as with cert-manager on a cluster), since the webhook
certificate comes from pki.py. CRDs and webhook configurations come from each module's upstream
manifests, and the `torch-distributed` ClusterTrainingRuntime from CRDS_DIR, as a Trainer install
provides it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from local_cluster import build, webhooks
from local_cluster.versions import load_versions

TRAINER_NAMESPACE = "kubeflow-system"
API_GROUP = "trainer.kubeflow.org"
RUNTIME_FILE = "runtime-torch_distributed.yaml"
# Where a Trainer install tells clients its version (manifests/overlays/manager); the Kubeflow SDK reads it.
PUBLIC_CONFIGMAP = "kubeflow-trainer-public"


def start_jobset(plane, binary: Path, ports, deadline: float) -> None:
    """The JobSet CRD and webhooks from sigs.k8s.io/jobset, then its controller."""
    module = build.module_dir("sigs.k8s.io/jobset", load_versions()["JOBSET_VERSION"])
    kubectl = plane.kubectl_path
    plane.apply_crds(webhooks.render(kubectl, module / "config/components/crd"), deadline)
    hooks = webhooks.on_loopback(
        webhooks.render(kubectl, module / "config/components/webhook"),
        ports.jobset_webhook,
        plane.pki.ca_cert,
        "jobset-",
    )
    plane.apply_objects(hooks)
    config = {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"port": ports.jobset_webhook, "host": "127.0.0.1"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.jobset_metrics}"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.jobset_probes}"},
    }
    config_file = plane.state_dir / "jobset-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    plane.start_controller("jobset", [str(binary), f"--config={config_file}"], ports.jobset_probes, deadline)


def start_trainer(plane, binary: Path, ports, deadline: float) -> None:
    """Trainer's webhooks (github.com/kubeflow/trainer/v2), version ConfigMap and controller, then the torch runtime."""
    version = load_versions()["TRAINER_VERSION"]
    module = build.module_dir("github.com/kubeflow/trainer/v2", version)
    plane.kubectl("create", "namespace", TRAINER_NAMESPACE)
    plane.kubectl(
        "create",
        "configmap",
        PUBLIC_CONFIGMAP,
        "-n",
        TRAINER_NAMESPACE,
        f"--from-literal=kubeflow_trainer_version={version}",
    )
    hooks = webhooks.on_loopback(
        webhooks.render(plane.kubectl_path, module / "manifests/base/webhook"), ports.trainer_webhook, plane.pki.ca_cert
    )
    plane.apply_objects(hooks)
    config = {
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
        "kind": "Configuration",
        "health": {
            "healthProbeBindAddress": f"127.0.0.1:{ports.trainer_probes}",
            "readinessEndpointName": "readyz",
            "livenessEndpointName": "healthz",
        },
        "metrics": {"bindAddress": f"127.0.0.1:{ports.trainer_metrics}", "secureServing": False},
        "webhook": {"port": ports.trainer_webhook, "host": "127.0.0.1"},
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
        "statusServer": {"port": ports.trainer_status},
    }
    config_file = plane.state_dir / "trainer-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    plane.start_controller(
        "trainer-controller-manager", [str(binary), f"--config={config_file}"], ports.trainer_probes, deadline
    )
    runtime = plane.crds_dir / RUNTIME_FILE
    if runtime.exists():
        # The runtime webhook answers as soon as the manager is ready; retry its first seconds.
        while True:
            done = plane.kubectl("apply", "--server-side", "-f", str(runtime), check=False)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if done.returncode != 0:
            raise RuntimeError(f"the torch-distributed runtime was refused: {done.stderr.strip()}")


def runtime_names(plane) -> list[str]:
    """The ClusterTrainingRuntimes installed."""
    listed = json.loads(plane.kubectl("get", "clustertrainingruntimes", "-o", "json").stdout)
    return [r["metadata"]["name"] for r in listed["items"]]
