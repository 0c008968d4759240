"""The KServe overlays (every overlay that uses components/kserve): strict schemas and what the controller expects."""

import copy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from manifests.rendering import (
    COMPONENTS_DIR,
    REPO,
    by_kind,
    differences,
    keyed,
    label_selector_matches,
    one,
    pod_templates,
    render,
)
from manifests.strict_schema import CRD_FILES, builtin_errors, custom_resource_errors

KSERVE = COMPONENTS_DIR / "kserve"
MODEL_ROOT = "/mnt/pvc/models/mnist"


def kserve_overlays() -> list[Path]:
    """Overlays whose kustomization lists components/kserve, with the overlay each starts from."""
    found = []
    for kustomization in sorted((REPO / "overlays").glob("*/kustomization.yaml")):
        content = yaml.safe_load(kustomization.read_text())
        if KSERVE in [(kustomization.parent / c).resolve() for c in content.get("components", [])]:
            found.append(kustomization.parent)
    return found


OVERLAYS = {f"overlays/{p.name}": p for p in kserve_overlays()}


def plain_overlay(overlay: Path) -> Path:
    (resource,) = yaml.safe_load((overlay / "kustomization.yaml").read_text())["resources"]
    return (overlay / resource).resolve()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(path) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="module")
def plain_rendered() -> dict[str, list[dict]]:
    return {name: render(plain_overlay(path)) for name, path in OVERLAYS.items()}


def predictor(objects: list[dict]) -> dict:
    return one(objects, "InferenceService", "mnist")["spec"]["predictor"]


def test_a_cpu_and_a_gpu_kserve_overlay_ship():
    assert set(OVERLAYS) >= {"overlays/cpu-kserve", "overlays/gpu-kserve"}
    assert {plain_overlay(p).name for p in OVERLAYS.values()} >= {"cpu", "gpu"}
    assert yaml.safe_load((KSERVE / "kustomization.yaml").read_text())["kind"] == "Component"


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_object_validates_strictly(rendered, require_crds, name):
    custom = {kind: group for group, kind in CRD_FILES}
    errors = {}
    for obj in rendered[name]:
        is_custom = custom.get(obj["kind"]) == obj["apiVersion"].split("/")[0]
        errors[f"{obj['kind']}/{obj['metadata']['name']}"] = (custom_resource_errors if is_custom else builtin_errors)(
            obj
        )
    assert errors == {key: [] for key in errors}


def test_a_misspelt_inferenceservice_field_is_an_error(rendered, require_crds):
    isvc = copy.deepcopy(one(rendered["overlays/cpu-kserve"], "InferenceService", "mnist"))
    isvc["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in error for error in custom_resource_errors(isvc))


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_inferenceservice_replaces_the_seldon_objects_and_only_the_frontend_url_changes(
    rendered, plain_rendered, name
):
    plain, combined = keyed(plain_rendered[name]), keyed(rendered[name])
    assert set(plain) - set(combined) == {"SeldonDeployment/mnist-classifier", "NetworkPolicy/mnist-classifier"}
    assert set(combined) - set(plain) == {"InferenceService/mnist", "NetworkPolicy/mnist-predictor"}
    shared = sorted(set(plain) & set(combined))
    changed = {path for path, _, _ in differences({k: plain[k] for k in shared}, {k: combined[k] for k in shared})}
    env = "Deployment/mnist-frontend.spec.template.spec.containers[frontend].env"
    assert changed == {f"{env}[FRONTEND_SELDON_URL].value", f"{env}[FRONTEND_MODEL_PROTOCOL]"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_raw_deployment_with_our_predictor_reading_what_the_trainer_publishes(rendered, name):
    isvc = one(rendered[name], "InferenceService", "mnist")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    spec = predictor(rendered[name])
    (container,) = spec["containers"]
    # KServe treats the container named kserve-container as the model server (ports, probes, the Service).
    assert container["name"] == "kserve-container"
    assert container["image"].rsplit(":", 1)[0].endswith("/mnist-kserve")
    trainer = one(rendered[name], "PyTorchJob", "mnist-ddp")["spec"]["pytorchReplicaSpecs"]["Master"]
    published = [
        a.split("=", 1)[1]
        for a in trainer["template"]["spec"]["containers"][0]["args"]
        if a.startswith("--model-root=")
    ]
    assert published == [MODEL_ROOT]
    assert f"--model_root={MODEL_ROOT}" in container["args"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    pvc_volume = next(v for v in volumes.values() if "persistentVolumeClaim" in v)
    assert pvc_volume["persistentVolumeClaim"] == {"claimName": "mnist-pvc", "readOnly": True}
    assert mounts[pvc_volume["name"]]["readOnly"] is True
    assert MODEL_ROOT.startswith(mounts[pvc_volume["name"]]["mountPath"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_ask_the_model_on_the_declared_port(rendered, name):
    (container,) = predictor(rendered[name])["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/models/mnist/ready", "port": "http1"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http1"}
    assert f"--http_port={ports['http1']}" in container["args"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_frontend_speaks_v2_to_the_predictor_service(rendered, name):
    objects = rendered[name]
    (frontend,) = one(objects, "Deployment", "mnist-frontend")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in frontend["env"]}
    assert env["FRONTEND_MODEL_PROTOCOL"] == "v2"
    url = urlsplit(env["FRONTEND_SELDON_URL"])
    # RawDeployment: the controller creates the Service <isvc>-predictor on port 80.
    assert url.hostname == "mnist-predictor" and url.port in (None, 80)
    assert url.path == "/v2/models/mnist/infer"


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_frontend_may_reach_the_predictor(rendered, name):
    objects = rendered[name]
    templates = list(pod_templates(objects))
    (served,) = [t for t in templates if t.where.startswith("InferenceService/")]
    frontend = next(t for t in templates if t.where == "Deployment/mnist-frontend")
    policies = [
        p for p in by_kind(objects, "NetworkPolicy") if label_selector_matches(p["spec"]["podSelector"], served.labels)
    ]
    assert [p["metadata"]["name"] for p in policies] == ["mnist-predictor"]
    (rule,) = policies[0]["spec"]["ingress"]
    assert all(label_selector_matches(peer["podSelector"], frontend.labels) for peer in rule["from"])
    (container,) = served.spec["containers"]
    assert [p["port"] for p in rule["ports"]] == [p["containerPort"] for p in container["ports"]]


def test_the_gpu_kserve_overlay_differs_from_the_cpu_one_only_in_the_trainer(rendered):
    found = differences(keyed(rendered["overlays/cpu-kserve"]), keyed(rendered["overlays/gpu-kserve"]))
    assert found and all(path.startswith("PyTorchJob/mnist-ddp.") for path, _, _ in found)
