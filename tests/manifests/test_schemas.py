"""Every object validates strictly: custom resources against upstream CRDs, built-in kinds against client models."""

import copy

import pytest

from manifests.rendering import KUSTOMIZATIONS, one
from manifests.strict_schema import builtin_errors, custom_resource_errors, strict_schema

CUSTOM_KINDS = ("PyTorchJob", "SeldonDeployment")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_custom_resources_validate_strictly_against_their_crds(renderings, require_crds, name):
    custom = [obj for obj in renderings[name] if obj["kind"] in CUSTOM_KINDS]
    assert sorted(obj["kind"] for obj in custom) == sorted(CUSTOM_KINDS)
    errors = {f"{obj['kind']}/{obj['metadata']['name']}": custom_resource_errors(obj) for obj in custom}
    assert errors == {key: [] for key in errors}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_builtin_objects_validate_strictly_against_the_client_models(renderings, name):
    builtin = [obj for obj in renderings[name] if obj["kind"] not in CUSTOM_KINDS]
    errors = {f"{obj['kind']}/{obj['metadata']['name']}": builtin_errors(obj) for obj in builtin}
    assert errors == {key: [] for key in errors}


@pytest.fixture
def gpu_objects(renderings):
    return copy.deepcopy(renderings["overlays/gpu"])


def _master_container(pytorchjob):
    return pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]


def test_a_misspelt_pytorchjob_field_is_an_error(gpu_objects, require_crds):
    job = one(gpu_objects, "PyTorchJob", "mnist-ddp")
    container = _master_container(job)
    container["resource"] = container.pop("resources")
    job["spec"]["runPolicy"]["cleanupPodPolicy"] = "None"
    errors = custom_resource_errors(job)
    assert any("'resource' was unexpected" in e for e in errors), errors
    assert any("'cleanupPodPolicy' was unexpected" in e for e in errors), errors


def test_a_misspelt_seldon_field_is_an_error(gpu_objects, require_crds):
    deployment = one(gpu_objects, "SeldonDeployment", "mnist-classifier")
    deployment["spec"]["predictors"][0]["graph"]["paramaters"] = []
    deployment["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["readinesProbe"] = {}
    errors = custom_resource_errors(deployment)
    assert any("'paramaters' was unexpected" in e for e in errors), errors
    assert any("'readinesProbe' was unexpected" in e for e in errors), errors


def test_custom_resource_metadata_is_checked_too(gpu_objects, require_crds):
    job = one(gpu_objects, "PyTorchJob", "mnist-ddp")
    job["metadata"]["label"] = {"a": "b"}
    assert custom_resource_errors(job) == ["metadata.label: unknown field (not in V1ObjectMeta)"]


@pytest.mark.parametrize(("value", "valid"), [(2, True), ("2", True), ("500m", True), (True, False), ([2], False)])
def test_int_or_string_fields_take_either(gpu_objects, require_crds, value, valid):
    job = one(gpu_objects, "PyTorchJob", "mnist-ddp")
    _master_container(job)["resources"]["limits"]["cpu"] = value
    assert (custom_resource_errors(job) == []) is valid


def test_preserve_unknown_fields_stays_open():
    schema = {
        "type": "object",
        "properties": {
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    strict = strict_schema(schema)
    assert "additionalProperties" not in strict["properties"]["open"]
    assert strict["properties"]["closed"]["additionalProperties"] is False
    assert strict["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert strict["additionalProperties"] is False


def test_a_misspelt_builtin_field_is_an_error(gpu_objects):
    deployment = one(gpu_objects, "Deployment", "mnist-frontend")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert builtin_errors(deployment) == [
        "Deployment.spec.template.spec.containers[0].imagePullPolicyy: unknown field (not in V1Container)"
    ]


@pytest.mark.parametrize(
    ("kind", "name", "change", "expected"),
    [
        ("Service", "mnist-frontend", lambda o: o["spec"]["ports"][0].update(port="80"), "expected int"),
        (
            "PersistentVolumeClaim",
            "mnist-pvc",
            lambda o: o["spec"].update(accessMode=["ReadWriteMany"]),
            "unknown field",
        ),
        ("NetworkPolicy", "mnist-classifier", lambda o: o["spec"]["ingress"].append([]), "expected an object"),
        ("Service", "mnist-frontend", lambda o: o["spec"]["ports"][0].pop("port"), "`port`, must not be `None`"),
        ("Deployment", "mnist-frontend", lambda o: o["spec"]["template"]["spec"].pop("containers"), "must not be"),
    ],
)
def test_wrong_types_and_missing_required_fields_are_errors(gpu_objects, kind, name, change, expected):
    obj = one(gpu_objects, kind, name)
    change(obj)
    errors = builtin_errors(obj)
    assert any(expected in e for e in errors), errors


def test_missing_crds_say_how_to_fetch_them(monkeypatch, tmp_path):
    monkeypatch.setenv("CRDS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"scripts/fetch-crds\.sh"):
        custom_resource_errors({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {}})
