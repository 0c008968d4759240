"""overlays/cpu-kserve on the real KServe v0.20.0 controller manager (local_cluster/kserve.py): the
InferenceService passes KServe's webhooks and is reconciled in RawDeployment (Standard) mode into the
predictor Deployment and Service, with our container as written, and its pod is admitted under restricted.

No node runs here, so the predictor pod stays Pending and the InferenceService is not Ready: what is checked
is what KServe's webhooks and controller do with the manifests (pkg/controller/v1beta1/inferenceservice at
v0.20.0).
"""

import json
from urllib.parse import urlparse

import pytest
from manifests.rendering import REPO, one, render
from test_overlays_on_the_control_plane import apply_overlay, get, pod_security_failures, wait_for

from local_cluster import kserve

OVERLAY = REPO / "overlays/cpu-kserve"
pytestmark = pytest.mark.skipif(not OVERLAY.exists(), reason="overlays/cpu-kserve is not in this checkout")
NAME = "mnist"
PREDICTOR = f"{NAME}-predictor"


def contains(stored, written, path: str = "") -> list[str]:
    """Where `written` is not part of `stored` (the API server may add defaults, never change a field)."""
    if isinstance(written, dict):
        if not isinstance(stored, dict):
            return [f"{path}: {stored!r} is not an object"]
        return [d for k, v in written.items() for d in contains(stored.get(k), v, f"{path}.{k}")]
    if isinstance(written, list):
        if not isinstance(stored, list) or len(stored) != len(written):
            return [f"{path}: {stored!r} != {written!r}"]
        return [d for i, (s, w) in enumerate(zip(stored, written, strict=True)) for d in contains(s, w, f"{path}[{i}]")]
    return [] if stored == written else [f"{path}: {stored!r} != {written!r}"]


def written_isvc() -> dict:
    return one(render(OVERLAY), "InferenceService", NAME)


def conditions(isvc: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (isvc.get("status") or {}).get("conditions") or []}


@pytest.fixture(scope="module")
def served(cluster):
    """overlays/cpu-kserve applied into a restricted namespace, and what the KServe controller made of it."""
    namespace = "ns-cpu-kserve"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply_overlay(cluster, "overlays/cpu-kserve", namespace)
    deployment = wait_for(f"the Deployment {PREDICTOR}", lambda: get(cluster, namespace, "deployment", PREDICTOR))
    service = wait_for(f"the Service {PREDICTOR}", lambda: get(cluster, namespace, "service", PREDICTOR))
    isvc = wait_for(
        "the InferenceService's IngressReady condition",
        lambda: (i := get(cluster, namespace, "inferenceservice", NAME)) and "IngressReady" in conditions(i) and i,
    )
    pods = wait_for(
        "the predictor pod",
        lambda: get(cluster, namespace, "pods", "-l", f"serving.kserve.io/inferenceservice={NAME}")["items"],
    )
    yield {"namespace": namespace, "deployment": deployment, "service": service, "isvc": isvc, "pods": pods}
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_predictor_deployment_runs_our_container_as_written(served):
    predictor = written_isvc()["spec"]["predictor"]
    pod = served["deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (ours,) = predictor["containers"]
    assert container["name"] == ours["name"] == "kserve-container"
    assert container["image"] == ours["image"] == "registry.example.com/kubeflow-mnist/mnist-kserve:0.1.0"
    assert container["args"] == ours["args"]
    for field in ("ports", "readinessProbe", "livenessProbe", "resources", "securityContext", "volumeMounts"):
        assert contains(container.get(field), ours[field], field) == []
    # The controller appends INFERENCE_SERVICE_NAME; ours come first, unchanged.
    assert container["env"][: len(ours["env"])] == ours["env"]
    assert {"name": "INFERENCE_SERVICE_NAME", "value": NAME} in container["env"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["mnist-pvc"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["mnist-pvc"]["persistentVolumeClaim"] == {"claimName": "mnist-pvc", "readOnly": True}
    assert pod["securityContext"] == predictor["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert served["deployment"]["spec"]["replicas"] == predictor["minReplicas"] == 1


def test_the_predictor_service_is_where_the_frontend_looks(served):
    service = served["service"]["spec"]
    (port,) = service["ports"]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    labels = served["deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    frontend = one(render(OVERLAY), "Deployment", "mnist-frontend")["spec"]["template"]["spec"]["containers"][0]
    url = urlparse({e["name"]: e.get("value") for e in frontend["env"]}["FRONTEND_SELDON_URL"])
    assert (url.hostname, url.port or 80) == (PREDICTOR, port["port"])


def test_the_predictor_pod_is_admitted_under_restricted_and_matched_by_the_network_policy(cluster, served):
    (pod,) = served["pods"]
    assert pod_security_failures(cluster, served["namespace"]) == []
    policy = one(render(OVERLAY), "NetworkPolicy", "mnist-predictor")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_the_pod_mutator_ran_on_the_predictor_pod(served):
    (pod,) = served["pods"]
    template = served["deployment"]["spec"]["template"]["metadata"].get("annotations") or {}
    # Only KServe's pod mutator writes these (pkg/webhook/admission/pod/metrics_aggregate_injector.go),
    # from the ConfigMap's metricsAggregator section; the Deployment's template has neither.
    for key in ("serving.kserve.io/enable-metric-aggregation", "serving.kserve.io/enable-prometheus-scraping"):
        assert key not in template
        assert pod["metadata"]["annotations"].get(key) == "false", f"the pod mutator did not set {key}"


def test_the_controller_reports_status_in_raw_deployment_mode(served):
    status = served["isvc"]["status"]
    assert status["deploymentMode"] == kserve.DEFAULT_DEPLOYMENT_MODE
    found = conditions(served["isvc"])
    assert found["IngressReady"] == "True"
    # No node runs the pod, so the predictor cannot become available.
    assert found["PredictorReady"] == "False" and found["Ready"] == "False"
    assert status["address"]["url"] == f"http://{PREDICTOR}.{served['namespace']}.svc.cluster.local"


def test_no_ingress_is_made(cluster, served):
    assert get(cluster, served["namespace"], "ingress")["items"] == []


def test_without_the_annotation_the_install_default_is_standard(cluster, restricted_namespace):
    isvc = written_isvc()
    isvc["metadata"]["name"] = "no-mode"
    del isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    cluster.kubectl("apply", "-n", restricted_namespace, "-f", "-", input=json.dumps(isvc))
    stored = get(cluster, restricted_namespace, "inferenceservice", "no-mode")
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == kserve.DEFAULT_DEPLOYMENT_MODE
    wait_for(
        "the Deployment no-mode-predictor",
        lambda: get(cluster, restricted_namespace, "deployment", "no-mode-predictor"),
    )


def test_the_defaulter_renames_the_deprecated_raw_deployment_mode(served):
    assert written_isvc()["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    stored = served["isvc"]["metadata"]["annotations"]
    assert stored["serving.kserve.io/deploymentMode"] == "Standard", "KServe's defaulter did not run"


def test_the_validator_refuses_more_min_than_max_replicas(cluster, restricted_namespace):
    isvc = written_isvc()
    isvc["metadata"]["name"] = "too-many"
    isvc["spec"]["predictor"]["minReplicas"] = 2
    refused = cluster.kubectl("apply", "-n", restricted_namespace, "-f", "-", input=json.dumps(isvc), check=False)
    assert refused.returncode != 0
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request' in refused.stderr
    assert "'MinReplicas' cannot be greater than MaxReplicas" in refused.stderr
    assert get(cluster, restricted_namespace, "inferenceservice", "too-many") is None
