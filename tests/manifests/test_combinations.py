"""Every overlay x component combination renders and validates strictly, as microservices-demo's kustomize/tests.

The combinations are found, not listed: each overlay that lists components (overlays/cpu-trainjob...),
and each component (components/*/kustomization.yaml) on top of each plain overlay (overlays/cpu,
overlays/gpu), generated in a temporary kustomization. Where the repository ships an overlay made of
exactly that plain overlay plus that component, the shipped one is the combination: it holds what
the pair needs besides (the GPU toleration of gpu-trainjob), so the bare pair is not generated.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from manifests.rendering import (
    COMPONENTS_DIR,
    IMAGE_NAMES,
    OVERLAYS,
    REPO,
    by_kind,
    containers,
    differences,
    keyed,
    label_selector_matches,
    one,
    pod_templates,
    render,
    uses_components,
)
from manifests.strict_schema import CRD_FILES, TRAINER_V2_CRD_FILES, builtin_errors, custom_resource_errors
from manifests.trainjob_pods import RESERVED_ENV, TRAINER_CONTAINER, find_runtime, trainer_pod_templates

COMPONENTS = sorted(p.parent for p in COMPONENTS_DIR.glob("*/kustomization.yaml"))
CUSTOM_KINDS = {kind: group for group, kind in {**CRD_FILES, **TRAINER_V2_CRD_FILES}}
PART_OF = ("app.kubernetes.io/part-of", "kubeflow-pytorch-mnist")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Combination:
    """A plain overlay with components on top, shipped as an overlay or generated for the test."""

    name: str
    plain_overlay: Path
    components: tuple[Path, ...]
    shipped: Path | None = None

    def kustomization(self, folder: Path) -> Path:
        """The directory to render: the shipped overlay, or a kustomization written under `folder`."""
        if self.shipped is not None:
            return self.shipped
        folder.mkdir(parents=True, exist_ok=True)
        # kustomize takes only relative paths to other kustomizations.
        relative = {
            "resources": [os.path.relpath(self.plain_overlay, folder)],
            "components": [os.path.relpath(c, folder) for c in self.components],
        }
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(relative))
        return folder


def shipped_combinations() -> list[Combination]:
    """The overlays that list components, with the plain overlay they start from."""
    found = []
    for kustomization in sorted((REPO / "overlays").glob("*/kustomization.yaml")):
        overlay = kustomization.parent
        if not uses_components(overlay):
            continue
        content = yaml.safe_load(kustomization.read_text())
        plain = [(overlay / r).resolve() for r in content.get("resources", []) if (overlay / r).resolve() in OVERLAYS]
        assert len(plain) == 1, f"{overlay.name}: a combination starts from one plain overlay, found {plain}"
        parts = tuple((overlay / c).resolve() for c in content["components"])
        found.append(Combination(f"overlays/{overlay.name}", plain[0], parts, shipped=overlay))
    return found


def all_combinations() -> list[Combination]:
    """The shipped combinations, and every component on every plain overlay that no shipped one covers."""
    shipped = shipped_combinations()
    covered = {(c.plain_overlay, c.components) for c in shipped}
    generated = [
        Combination(f"overlays/{overlay.name}+components/{component.name}", overlay, (component,))
        for overlay in OVERLAYS
        for component in COMPONENTS
        if (overlay, (component,)) not in covered
    ]
    return shipped + generated


COMBINATIONS = {c.name: c for c in all_combinations()}


@pytest.fixture(scope="session")
def combination_renderings(tmp_path_factory) -> dict[str, list[dict]]:
    """Rendered objects of each combination."""
    folder = tmp_path_factory.mktemp("combinations")
    return {name: render(c.kustomization(folder / re.sub(r"\W+", "_", name))) for name, c in COMBINATIONS.items()}


@pytest.fixture(scope="session")
def plain_renderings() -> dict[Path, list[dict]]:
    """Rendered objects of each plain overlay, the starting point of the combinations."""
    return {overlay: render(overlay) for overlay in OVERLAYS}


def all_pod_templates(objects: list[dict]):
    """The pods of the rendering, with those the Trainer controller will create for each TrainJob."""
    templates = list(pod_templates(objects))
    for trainjob in by_kind(objects, "TrainJob"):
        runtime = find_runtime(trainjob, objects)
        assert runtime is not None, (
            f"TrainJob {trainjob['metadata']['name']}: no runtime {trainjob['spec']['runtimeRef']}"
        )
        templates += trainer_pod_templates(trainjob, runtime)
    return templates


def test_every_component_and_trainer_v2_overlay_is_found():
    assert {c.name for c in COMPONENTS} >= {"trainjob"}
    assert {"overlays/cpu-trainjob", "overlays/gpu-trainjob"} <= set(COMBINATIONS)
    for component in COMPONENTS:
        assert yaml.safe_load((component / "kustomization.yaml").read_text())["kind"] == "Component", component
        alone_on = {c.plain_overlay for c in COMBINATIONS.values() if c.components == (component,)}
        assert alone_on == set(OVERLAYS), f"{component.name} must be rendered on top of every plain overlay"


def test_a_generated_combination_renders_a_component_on_a_plain_overlay(tmp_path):
    combination = Combination("x", REPO / "overlays" / "cpu", (COMPONENTS_DIR / "trainjob",))
    objects = render(combination.kustomization(tmp_path / "x"))
    assert {obj["kind"] for obj in objects} >= {"TrainJob", "SeldonDeployment"}
    assert "PyTorchJob" not in {obj["kind"] for obj in objects}


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_object_validates_strictly(combination_renderings, require_crds, name):
    errors = {}
    for obj in combination_renderings[name]:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        custom = CUSTOM_KINDS.get(obj["kind"]) == group
        errors[f"{obj['kind']}/{obj['metadata']['name']}"] = (custom_resource_errors if custom else builtin_errors)(obj)
    assert errors == {key: [] for key in errors}


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_object_is_labelled_and_has_no_namespace(combination_renderings, name):
    for obj in combination_renderings[name]:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"].get("labels", {}).get(PART_OF[0]) == PART_OF[1], where
        assert "namespace" not in obj["metadata"], where


@pytest.mark.parametrize("name", COMBINATIONS)
def test_pods_reference_what_exists(combination_renderings, name):
    objects = combination_renderings[name]
    claims = {o["metadata"]["name"] for o in by_kind(objects, "PersistentVolumeClaim")}
    accounts = {o["metadata"]["name"] for o in by_kind(objects, "ServiceAccount")} | {"default"}
    for template in all_pod_templates(objects):
        volumes = {v["name"]: v for v in template.spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, template.where
        assert template.spec.get("serviceAccountName", "default") in accounts, template.where
        for container in containers(template):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{template.where}/{container['name']}: no volume {mount['name']}"


@pytest.mark.parametrize("name", COMBINATIONS)
def test_network_policies_select_pods_of_the_rendering(combination_renderings, name):
    objects = combination_renderings[name]
    templates = all_pod_templates(objects)
    for policy in by_kind(objects, "NetworkPolicy"):
        selectors = [policy["spec"]["podSelector"]] + [
            peer["podSelector"]
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
            if "podSelector" in peer
        ]
        for selector in selectors:
            assert any(label_selector_matches(selector, t.labels) for t in templates), (
                policy["metadata"]["name"],
                selector,
            )


def token_mounted(template, objects: list[dict]) -> bool:
    """Whether the pod gets a service account token: its own setting, else its ServiceAccount's (default: yes)."""
    if "automountServiceAccountToken" in template.spec:
        return template.spec["automountServiceAccountToken"]
    account = template.spec.get("serviceAccountName", "default")
    found = [a for a in by_kind(objects, "ServiceAccount") if a["metadata"]["name"] == account]
    return found[0].get("automountServiceAccountToken", True) if found else True


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_pod_runs_restricted_with_requests_limits_and_no_sidecar(combination_renderings, name):
    objects = combination_renderings[name]
    for template in all_pod_templates(objects):
        assert not token_mounted(template, objects), template.where
        assert template.annotations.get("sidecar.istio.io/inject") == "false", template.where
        pod = template.spec.get("securityContext", {}) if template.pod_security_context_kept else {}
        tmp_volumes = {v["name"] for v in template.spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(template):
            where = f"{template.where}/{container['name']}"
            security = {k: pod[k] for k in ("runAsNonRoot", "runAsUser", "seccompProfile") if k in pod}
            security.update(container.get("securityContext", {}))
            assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) >= 10000, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False and security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}) == {"drop": ["ALL"]}, where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in tmp_volumes, f"{where}: /tmp must be a writable emptyDir"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{where} {kind}"
            assert "/" in container["image"] and re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", container["image"]), (
                f"{where}: {container['image']} needs a registry and a tag or digest"
            )


# --- Trainer v2: the TrainJob combinations ----------------------------------------------------------

TRAINJOB = COMPONENTS_DIR / "trainjob"
TRAINJOB_COMBINATIONS = [n for n, c in COMBINATIONS.items() if TRAINJOB in c.components]
# With the trainjob component alone, nothing but the training job may change.
TRAINJOB_ALONE = [n for n, c in COMBINATIONS.items() if c.components == (TRAINJOB,)]


def plain_trainer(plain_objects: list[dict]) -> tuple[dict, dict]:
    """The Master pod spec and container of the PyTorchJob that a plain overlay renders."""
    spec = one(plain_objects, "PyTorchJob", "mnist-ddp")["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    return spec, spec["containers"][0]


@pytest.mark.parametrize("name", TRAINJOB_ALONE)
def test_the_trainjob_replaces_the_pytorchjob_and_nothing_else_changes(combination_renderings, plain_renderings, name):
    plain = keyed(plain_renderings[COMBINATIONS[name].plain_overlay])
    combined = keyed(combination_renderings[name])
    assert set(plain) - set(combined) == {"PyTorchJob/mnist-ddp"}
    assert set(combined) - set(plain) == {"TrainJob/mnist-ddp", "ServiceAccount/mnist-ddp"}
    shared = sorted(set(plain) & set(combined))
    assert differences({k: plain[k] for k in shared}, {k: combined[k] for k in shared}) == []


@pytest.mark.parametrize("name", TRAINJOB_COMBINATIONS)
def test_the_trainjob_runs_what_the_pytorchjob_ran(combination_renderings, plain_renderings, name):
    """Same image, args (backend included) and resources as the overlay's PyTorchJob, 2 nodes x 1 process, torchrun."""
    _, pytorch = plain_trainer(plain_renderings[COMBINATIONS[name].plain_overlay])
    trainer = one(combination_renderings[name], "TrainJob", "mnist-ddp")["spec"]["trainer"]
    assert trainer["image"] == pytorch["image"]
    assert trainer["image"].split("/")[-1].split(":")[0] in IMAGE_NAMES
    assert trainer["args"] == pytorch["args"]
    assert trainer["resourcesPerNode"] == pytorch["resources"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    # The torch plugin injects PET_* but starts nothing itself: torchrun turns them into RANK, WORLD_SIZE...
    assert trainer["command"] == ["torchrun", "--module", "mnist_ddp"]
    assert not {e["name"] for e in trainer.get("env", [])} & set(RESERVED_ENV), "the webhook rejects reserved envs"
    threads = next(e for e in trainer["env"] if e["name"] == "OMP_NUM_THREADS")["valueFrom"]["resourceFieldRef"]
    assert threads == {"containerName": TRAINER_CONTAINER, "resource": "limits.cpu", "divisor": "1"}


@pytest.mark.parametrize("name", TRAINJOB_COMBINATIONS)
def test_the_trainjob_names_a_torch_runtime_and_patches_only_what_it_has(combination_renderings, name):
    objects = combination_renderings[name]
    trainjob = one(objects, "TrainJob", "mnist-ddp")
    assert trainjob["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    runtime = find_runtime(trainjob, objects)
    assert runtime is not None and "torch" in runtime["spec"]["mlPolicy"], "the torch plugin injects the PET_* envs"
    jobs = {job["name"]: job for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]}
    for patch in trainjob["spec"]["runtimePatches"]:
        # The webhook's rule (validation.IsDomainPrefixedPath): a DNS subdomain, a slash, a path.
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[\w./-]+", patch["manager"]), patch["manager"]
        for job_patch in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            assert job_patch["name"] in jobs, f"the runtime has no job {job_patch['name']}"
            names = {c["name"] for c in jobs[job_patch["name"]]["template"]["spec"]["template"]["spec"]["containers"]}
            for container in job_patch["template"]["spec"]["template"]["spec"].get("containers", []):
                assert container["name"] in names, f"the runtime's {job_patch['name']} job has no {container['name']}"
                assert "env" not in container, "the webhook rejects env patches of the node container"


@pytest.mark.parametrize("name", TRAINJOB_COMBINATIONS)
def test_the_trainer_pods_mount_the_pvc_read_write_and_carry_the_trainer_labels(combination_renderings, name):
    objects = combination_renderings[name]
    (pvc,) = by_kind(objects, "PersistentVolumeClaim")
    (node,) = trainer_pod_templates(
        one(objects, "TrainJob", "mnist-ddp"), find_runtime(by_kind(objects, "TrainJob")[0], objects)
    )
    volume = next(v for v in node.spec["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}
    (container,) = node.spec["containers"]
    assert {"name": volume["name"], "mountPath": "/mnt/pvc"} in container["volumeMounts"]
    shm = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert next(v for v in node.spec["volumes"] if v["name"] == shm["name"])["emptyDir"]["medium"] == "Memory"
    policy = one(objects, "NetworkPolicy", "mnist-ddp")
    assert label_selector_matches(policy["spec"]["podSelector"], node.labels), "the trainer's NetworkPolicy selects it"
    env = {e["name"]: e for e in container["env"]}
    assert env["PET_NNODES"]["value"] == "2" and env["PET_NPROC_PER_NODE"]["value"] == "1"
    assert env["PET_MASTER_ADDR"]["value"] == "mnist-ddp-node-0-0.mnist-ddp"


@pytest.mark.parametrize("name", TRAINJOB_COMBINATIONS)
def test_a_gpu_trainjob_uses_nccl_a_gpu_and_tolerates_the_taint(combination_renderings, name):
    trainjob = one(combination_renderings[name], "TrainJob", "mnist-ddp")
    trainer = trainjob["spec"]["trainer"]
    (patch,) = trainjob["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    if "nvidia.com/gpu" in trainer["resourcesPerNode"]["limits"]:
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 1
        assert "--backend=nccl" in trainer["args"]
        assert GPU_TOLERATION in pod.get("tolerations", []), "GPU nodes are tainted: the pods would stay Pending"
    else:
        assert "--backend=gloo" in trainer["args"]
        assert "tolerations" not in pod


def test_the_gpu_trainjob_overlay_differs_from_the_cpu_one_where_the_gpu_overlay_does(combination_renderings):
    cpu = keyed(combination_renderings["overlays/cpu-trainjob"])
    gpu = keyed(combination_renderings["overlays/gpu-trainjob"])
    paths = {path for path, _, _ in differences(cpu, gpu)}
    trainer = "TrainJob/mnist-ddp.spec.trainer"
    pod = (
        "TrainJob/mnist-ddp.spec.runtimePatches[0].trainingRuntimeSpec.template.spec"
        ".replicatedJobs[node].template.spec.template.spec"
    )
    assert paths == {
        f"{trainer}.image",
        f"{trainer}.args[4]",
        f"{trainer}.resourcesPerNode.limits.nvidia.com/gpu",
        f"{pod}.tolerations",
    }


def test_images_set_on_top_of_a_trainjob_overlay_reach_the_trainjob(tmp_path):
    """`kustomize edit set image` in a kustomization over overlays/cpu-trainjob changes the TrainJob's image too."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(REPO / "overlays" / "cpu-trainjob", tmp_path)],
                "images": [{"name": "registry.example.com/kubeflow-mnist/mnist-trainer", "newTag": "9.9.9-cpu"}],
            }
        )
    )
    trainjob = one(render(tmp_path), "TrainJob", "mnist-ddp")
    assert trainjob["spec"]["trainer"]["image"] == "registry.example.com/kubeflow-mnist/mnist-trainer:9.9.9-cpu"
