"""Strict validation: custom resources against their CRD's schema, built-in kinds against the client's models.

Strict means that a field the schema does not declare is an error, where the API server
would silently drop it (a misspelt `imagePullPolicyy`, a `resource:` meant as `resources:`).
"""

import copy
import functools
import os
import re
from pathlib import Path

import jsonschema
import kubernetes.client
import yaml

from manifests.rendering import REPO

CRD_FILES = {
    ("kubeflow.org", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("machinelearning.seldon.io", "SeldonDeployment"): "machinelearning.seldon.io_seldondeployments.yaml",
    ("serving.kserve.io", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
}
# Kubeflow Trainer v2 (v2.3.0), for the TrainJob combinations. Kept apart from CRD_FILES, the files that
# scripts/fetch-crds.sh fetches and require_crds insists on, until that script fetches these too.
TRAINER_V2_CRD_FILES = {
    ("trainer.kubeflow.org", "TrainJob"): "trainer.kubeflow.org_trainjobs.yaml",
    ("trainer.kubeflow.org", "TrainingRuntime"): "trainer.kubeflow.org_trainingruntimes.yaml",
    ("trainer.kubeflow.org", "ClusterTrainingRuntime"): "trainer.kubeflow.org_clustertrainingruntimes.yaml",
}
HOW_TO_GET_CRDS = (
    "The upstream CRDs are missing from {crds_dir}. Fetch the pinned files with "
    "`scripts/fetch-crds.sh .cache/crds` (or `make crds`), then `export CRDS_DIR=$PWD/.cache/crds`."
)
# Quantities (cpu: 2, nvidia.com/gpu: 1) may be written as numbers; the client types them as str.
QUANTITY_MAPS = ("limits", "requests")


def crds_dir() -> Path:
    """Where the CRD files are: $CRDS_DIR, else ../shared/crds next to the repository."""
    return Path(os.environ.get("CRDS_DIR", REPO.parent / "shared" / "crds"))


@functools.cache
def _load_yaml(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(HOW_TO_GET_CRDS.format(crds_dir=path.parent))
    # The Seldon CRD is 2 MB: the C loader reads it in a fraction of the pure-Python time.
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def strict_schema(schema: dict, at_root: bool = True) -> dict:
    """A copy of a CRD's openAPIV3Schema for jsonschema, closed wherever the API server would prune.

    Objects with `properties` get `additionalProperties: false`, unless they carry
    `x-kubernetes-preserve-unknown-fields: true`; objects with neither properties nor
    additionalProperties accept nothing (everything in them would be pruned), except the
    root `metadata`, which is ObjectMeta and is checked with the built-in models.
    `x-kubernetes-int-or-string` becomes integer-or-string; `nullable` admits null.
    """
    schema = copy.deepcopy(schema)
    _close(schema, at_root)
    return schema


def _close(schema: dict, at_root: bool) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        schema.pop("anyOf", None)
        schema["type"] = ["integer", "string"]
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and not preserve and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for name, child in schema.get("properties", {}).items():
        if at_root and name == "metadata":
            continue
        _close(child, at_root=False)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            _close(schema[key], at_root=False)
    for key in ("anyOf", "allOf", "oneOf"):
        for child in schema.get(key, []):
            _close(child, at_root=False)


def crd_validator(group: str, kind: str, version: str) -> jsonschema.Draft7Validator:
    """A strict validator for one served version of a CRD."""
    return _crd_validator(crds_dir() / {**CRD_FILES, **TRAINER_V2_CRD_FILES}[(group, kind)], kind, version)


@functools.cache
def _crd_validator(path: Path, kind: str, version: str) -> jsonschema.Draft7Validator:
    crd = _load_yaml(path)
    assert crd["spec"]["names"]["kind"] == kind, f"{path.name} does not define {kind}"
    versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in versions, f"{version} {kind} is not served by {path.name} (served: {sorted(versions)})"
    return jsonschema.Draft7Validator(strict_schema(versions[version]["schema"]["openAPIV3Schema"]))


def custom_resource_errors(obj: dict) -> list[str]:
    """Everything wrong with a custom resource: its body against the CRD, its metadata against ObjectMeta."""
    group, version = obj["apiVersion"].split("/")
    validator = crd_validator(group, obj["kind"], version)
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
    return errors + model_errors(obj.get("metadata", {}), "V1ObjectMeta", "metadata")


def builtin_errors(obj: dict) -> list[str]:
    """Everything wrong with a built-in object, checked against the kubernetes client's model of its kind."""
    version = obj["apiVersion"].split("/")[-1]
    model = f"{version[0].upper()}{version[1:]}{obj['kind']}"
    if not hasattr(kubernetes.client.models, model):
        return [f"no model {model} in the kubernetes client for {obj['apiVersion']} {obj['kind']}"]
    return model_errors(obj, model, obj["kind"])


def model_errors(data, type_name: str, path: str) -> list[str]:
    """Check `data` against a kubernetes client type ('V1PodSpec', 'list[V1Container]', 'dict(str, str)', 'int'...).

    Unknown keys, wrong types and missing required fields are errors (the models' own
    constructors enforce required fields).
    """
    errors: list[str] = []
    _build(data, type_name, path, errors)
    return errors


def _build(data, type_name: str, path: str, errors: list[str]):
    list_of = re.fullmatch(r"list\[(.+)\]", type_name)
    dict_of = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if list_of:
        if not isinstance(data, list):
            errors.append(f"{path}: expected a list, got {type(data).__name__}")
            return None
        return [_build(item, list_of[1], f"{path}[{i}]", errors) for i, item in enumerate(data)]
    if dict_of:
        if not isinstance(data, dict):
            errors.append(f"{path}: expected a map, got {type(data).__name__}")
            return None
        quantity = path.rsplit(".", 1)[-1] in QUANTITY_MAPS
        value_type = "quantity" if quantity and dict_of[1] == "str" else dict_of[1]
        return {key: _build(value, value_type, f"{path}.{key}", errors) for key, value in data.items()}
    if type_name in PRIMITIVES:
        if not PRIMITIVES[type_name](data):
            errors.append(f"{path}: expected {type_name}, got {type(data).__name__} {data!r}")
        return data
    model = getattr(kubernetes.client.models, type_name)
    if not isinstance(data, dict):
        errors.append(f"{path}: expected an object ({type_name}), got {type(data).__name__}")
        return None
    attribute_of = {key: attribute for attribute, key in model.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        if key not in attribute_of:
            errors.append(f"{path}.{key}: unknown field (not in {type_name})")
            continue
        attribute = attribute_of[key]
        kwargs[attribute] = _build(value, model.openapi_types[attribute], f"{path}.{key}", errors)
    try:
        return model(**kwargs)
    except ValueError as error:
        errors.append(f"{path}: {error}")
        return None


PRIMITIVES = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str),
    "date": lambda v: isinstance(v, str),
    "quantity": lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
    # IntOrString (ports) and free-form fields.
    "object": lambda v: v is not None,
}
