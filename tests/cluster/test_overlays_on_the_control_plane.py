"""The overlays on a real API server with the real Training Operator: applied strictly, reconciled into
pods, and every pod admitted under Pod Security "restricted".

No node runs here, so the pods stay Pending: what is checked is what the API server admits and what the
controllers create. The Seldon Core operator cannot be built here (the Go module proxy refuses
github.com/seldonio/seldon-core at every version), so the SeldonDeployment is only stored and validated
against its CRD: no model pod or `mnist-classifier-default` Service is created (docs/manifests.md).
"""

import json
import time

import pytest
from manifests.rendering import REPO, one, render

OVERLAYS = ("overlays/cpu", "overlays/gpu")
RESTRICTED_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def wait_for(what: str, probe, timeout_s: float = 60.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def get(cluster, namespace: str, *what: str) -> dict | None:
    """An object as JSON, or None while it does not exist."""
    done = cluster.kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def apply_overlay(cluster, overlay: str, namespace: str) -> None:
    """What the tutorial runs, strictly: server-side apply with unknown fields as errors."""
    cluster.kubectl("apply", "--server-side", "--validate=strict", "-k", str(REPO / overlay), "-n", namespace)


def pod_security_failures(cluster, namespace: str) -> list[str]:
    """Events of controllers that could not create a pod because Pod Security refused it."""
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e["message"] for e in events if "violates PodSecurity" in e.get("message", "")]


@pytest.fixture(scope="module", params=OVERLAYS)
def applied(request, cluster):
    """One overlay applied into a restricted namespace, with the pods the controllers created."""
    overlay = request.param
    namespace = "ns-" + overlay.replace("/", "-")
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply_overlay(cluster, overlay, namespace)
    pods = {}
    for name in ("mnist-ddp-master-0", "mnist-ddp-worker-0"):
        pods[name] = wait_for(f"pod {name} in {namespace}", lambda n=name: get(cluster, namespace, "pod", n))
    frontend = wait_for(
        f"a frontend pod in {namespace}",
        lambda: get(cluster, namespace, "pods", "-l", "app.kubernetes.io/name=mnist-frontend")["items"],
    )
    pods["frontend"] = frontend[0]
    yield overlay, namespace, pods
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_every_pod_is_admitted_under_restricted(cluster, applied):
    _, namespace, pods = applied
    assert set(pods) == {"mnist-ddp-master-0", "mnist-ddp-worker-0", "frontend"}
    assert pod_security_failures(cluster, namespace) == []


def test_the_operator_creates_the_replica_services(cluster, applied):
    _, namespace, _ = applied
    for name in ("mnist-ddp-master-0", "mnist-ddp-worker-0"):
        service = wait_for(f"Service {name}", lambda n=name: get(cluster, namespace, "service", n))
        assert [p["port"] for p in service["spec"]["ports"]] == [23456]
    frontend = get(cluster, namespace, "service", "mnist-frontend")
    assert frontend is not None


def test_the_worker_init_container_is_restricted(applied):
    _, _, pods = applied
    init = pods["mnist-ddp-worker-0"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["init-pytorch"]
    security = init[0]["securityContext"]
    assert {k: security[k] for k in RESTRICTED_SECURITY} == RESTRICTED_SECURITY
    assert "nslookup mnist-ddp-master-0" in init[0]["command"][-1]
    assert "initContainers" not in pods["mnist-ddp-master-0"]["spec"], "the Master has no init container"


def test_the_seldon_deployment_is_stored_as_written(cluster, applied):
    overlay, namespace, _ = applied
    stored = get(cluster, namespace, "seldondeployment", "mnist-classifier")
    written = one(render(REPO / overlay), "SeldonDeployment", "mnist-classifier")
    assert stored["spec"] == written["spec"], "the API server pruned or changed fields of the SeldonDeployment"


def without_init_security(pod: dict) -> dict:
    """The Worker pod as the operator builds it with its own built-in init-container template."""
    clone = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "built-in-template"}, "spec": pod["spec"]}
    clone = json.loads(json.dumps(clone))
    clone["spec"].pop("nodeName", None)
    for c in clone["spec"]["initContainers"]:
        c.pop("securityContext", None)
    return clone


def test_restricted_refuses_the_operators_built_in_init_container(cluster, applied):
    _, namespace, pods = applied
    refused = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(without_init_security(pods["mnist-ddp-worker-0"])),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert 'container "init-pytorch" must set securityContext.allowPrivilegeEscalation=false' in refused.stderr


def test_the_webhook_refuses_a_job_with_two_masters(cluster, restricted_namespace):
    job = one(render(REPO / "overlays/cpu"), "PyTorchJob", "mnist-ddp")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    refused = cluster.kubectl("apply", "-n", restricted_namespace, "-f", "-", input=json.dumps(job), check=False)
    assert refused.returncode != 0
    assert 'admission webhook "validator.pytorchjob.training-operator.kubeflow.org" denied the request' in (
        refused.stderr
    )
    assert "must be 1" in refused.stderr or "Master" in refused.stderr


def test_strict_apply_refuses_an_unknown_field(cluster, restricted_namespace):
    job = one(render(REPO / "overlays/cpu"), "PyTorchJob", "mnist-ddp")
    job["spec"]["runPolicy"]["backoffLimitt"] = 3
    refused = cluster.kubectl(
        "apply", "--server-side", "--validate=strict", "-n", restricted_namespace, "-f", "-",
        input=json.dumps(job), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert ".spec.runPolicy.backoffLimitt: field not declared in schema" in refused.stderr
