"""overlays/cpu-trainjob on the real Kubeflow Trainer v2.3.0 and JobSet controllers: the TrainJob is admitted
by the Trainer's webhooks, reconciled into a JobSet and its pods, every pod admitted under restricted, with
the env that the torch plugin sets (pkg/runtime/framework/plugins/torch/torch.go at v2.3.0)."""

import json

import pytest
from manifests.rendering import REPO, one, render
from test_overlays_on_the_control_plane import apply_overlay, get, pod_security_failures, wait_for

from local_cluster import trainer_v2

OVERLAY = REPO / "overlays/cpu-trainjob"
pytestmark = pytest.mark.skipif(not OVERLAY.exists(), reason="overlays/cpu-trainjob is not in this checkout")


def jobset_pods(cluster, namespace: str) -> list[dict]:
    listed = get(cluster, namespace, "pods", "-l", "jobset.sigs.k8s.io/jobset-name=mnist-ddp")
    return sorted(listed["items"], key=lambda p: p["metadata"]["name"]) if listed else []


@pytest.fixture(scope="module")
def trainjob(cluster):
    namespace = "ns-cpu-trainjob"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply_overlay(cluster, "overlays/cpu-trainjob", namespace)
    wait_for("the JobSet mnist-ddp", lambda: get(cluster, namespace, "jobset", "mnist-ddp"))
    pods = wait_for("two node pods", lambda: (p := jobset_pods(cluster, namespace)) and len(p) == 2 and p)
    yield namespace, pods
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_torch_runtime_is_installed(cluster):
    assert "torch-distributed" in trainer_v2.runtime_names(cluster)


def test_every_node_pod_is_admitted_under_restricted(cluster, trainjob):
    namespace, pods = trainjob
    assert len(pods) == 2
    assert pod_security_failures(cluster, namespace) == []


def test_the_node_pods_get_the_torch_plugins_env(trainjob):
    _, pods = trainjob
    written = one(render(OVERLAY), "TrainJob", "mnist-ddp")["spec"]["trainer"]
    ranks = set()
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["PET_NNODES"]["value"] == "2"
        assert env["PET_NPROC_PER_NODE"]["value"] == "1"
        assert env["PET_MASTER_ADDR"]["value"] == "mnist-ddp-node-0-0.mnist-ddp"
        assert env["PET_MASTER_PORT"]["value"] == "29500"
        assert 29500 in [p["containerPort"] for p in container["ports"]]
        field = env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        ranks.add(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
        assert container["command"] == written["command"]
        assert container["args"] == written["args"]
        assert container["image"] == written["image"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert {v["name"] for v in pod["spec"]["volumes"]} >= {"mnist-pvc", "tmp", "dshm"}
    assert ranks == {"0", "1"}


def test_the_trainer_webhook_refuses_an_unknown_runtime(cluster, restricted_namespace):
    job = one(render(OVERLAY), "TrainJob", "mnist-ddp")
    job["spec"]["runtimeRef"]["name"] = "no-such-runtime"
    refused = cluster.kubectl("apply", "-n", restricted_namespace, "-f", "-", input=json.dumps(job), check=False)
    assert refused.returncode != 0
    assert "trainer.kubeflow.org" in refused.stderr and "denied the request" in refused.stderr, refused.stderr
