"""The pods that Kubeflow Trainer v2.3.0 makes of a TrainJob, built the way its controller builds them.

A TrainJob holds no pod template: the trainer pods come from the runtime it names, with the
TrainJob's fields laid over it. So that the pod checks (security, volumes, labels) see what will
run, this module does the same steps as the v2.3.0 controller:
- pkg/runtime/core/trainingruntime.go: `runtimePatches` strategic-merged into the runtime's JobSet
  spec, then `trainer.resourcesPerNode` merged over the `node` container's resources;
- pkg/runtime/framework/plugins/torch/torch.go: `trainer.env` upserted into the `node` container,
  then PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT;
- pkg/runtime/framework/plugins/jobset/builder.go: `trainer.image`, `command` and `args` set on it.
Only the job whose `trainer.kubeflow.org/trainjob-ancestor-step` label is `trainer` gets the
trainer's fields, and in it only the container called `node`.
"""

import copy
import math
from pathlib import Path

import yaml

from manifests.rendering import PodTemplate
from manifests.strict_schema import crds_dir

ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
TRAINER_CONTAINER = "node"
# constants.ContainerTrainerPort and the master address format of the torch plugin.
MASTER_PORT = 29500
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
UPSTREAM_RUNTIMES = ("runtime-torch_distributed.yaml",)
# Strategic merge keys of the pod fields a runtime patch may set (k8s.io/api/core/v1 patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
}


def upstream_runtimes() -> list[dict]:
    """The ClusterTrainingRuntimes a Trainer v2.3.0 install provides, from the pinned files in CRDS_DIR."""
    return [yaml.safe_load(Path(crds_dir() / name).read_text()) for name in UPSTREAM_RUNTIMES]


def find_runtime(trainjob: dict, objects: list[dict]) -> dict | None:
    """The runtime a TrainJob names: a TrainingRuntime of the rendering, or a ClusterTrainingRuntime (or upstream)."""
    ref = trainjob["spec"]["runtimeRef"]
    kind = ref.get("kind", "ClusterTrainingRuntime")
    candidates = objects + (upstream_runtimes() if kind == "ClusterTrainingRuntime" else [])
    found = [o for o in candidates if o["kind"] == kind and o["metadata"]["name"] == ref["name"]]
    return found[0] if found else None


def strategic_merge(base, patch, key: str = ""):
    """A strategic merge patch of plain data: maps merge, lists with a merge key merge item by item, others replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = strategic_merge(base.get(name), value, name)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        merged = [dict(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old[merge_key] == item[merge_key]), None)
            if index is None:
                merged.append(item)
            else:
                merged[index] = strategic_merge(merged[index], item)
        return merged
    return copy.deepcopy(patch)


def upsert_env(env: list[dict], additions: list[dict]) -> list[dict]:
    """apply.UpsertEnvVars: a variable of the same name is replaced where it is, a new one appended."""
    merged = list(env)
    for variable in additions:
        index = next((i for i, old in enumerate(merged) if old["name"] == variable["name"]), None)
        if index is None:
            merged.append(variable)
        else:
            merged[index] = variable
    return merged


def jobset_spec(trainjob: dict, runtime: dict) -> dict:
    """The runtime's JobSet spec with the TrainJob's runtime patches merged in, in order."""
    spec = copy.deepcopy(runtime["spec"]["template"]["spec"])
    for patch in trainjob["spec"].get("runtimePatches", []):
        patch_spec = patch.get("trainingRuntimeSpec", {}).get("template", {}).get("spec")
        if patch_spec:
            spec = strategic_merge_jobs(spec, patch_spec)
    return spec


def strategic_merge_jobs(spec: dict, patch: dict) -> dict:
    """JobSetSpec's replicatedJobs merge by name; inside each job, the pod fields merge strategically."""
    merged = dict(spec)
    jobs = [copy.deepcopy(job) for job in spec["replicatedJobs"]]
    for job_patch in patch.get("replicatedJobs", []):
        index = next(i for i, job in enumerate(jobs) if job["name"] == job_patch["name"])
        jobs[index] = strategic_merge(jobs[index], job_patch)
    merged["replicatedJobs"] = jobs
    return merged


def trainer_pod_templates(trainjob: dict, runtime: dict) -> list[PodTemplate]:
    """The pod template of every job of the JobSet, the trainer's with the TrainJob's fields in its `node` container."""
    name = trainjob["metadata"]["name"]
    trainer = trainjob["spec"].get("trainer", {})
    num_nodes = trainer.get("numNodes", runtime["spec"].get("mlPolicy", {}).get("numNodes", 1))
    templates = []
    for job in jobset_spec(trainjob, runtime)["replicatedJobs"]:
        pod = job["template"]["spec"]["template"]
        spec = copy.deepcopy(pod["spec"])
        if job["template"].get("metadata", {}).get("labels", {}).get(ANCESTOR_LABEL) == "trainer":
            for container in spec["containers"]:
                if container["name"] == TRAINER_CONTAINER:
                    _apply_trainer(container, trainer, name, num_nodes)
        metadata = pod.get("metadata", {})
        where = f"TrainJob/{name}/{job['name']}"
        templates.append(PodTemplate(where, metadata.get("labels", {}), metadata.get("annotations", {}), spec))
    return templates


def _apply_trainer(container: dict, trainer: dict, trainjob_name: str, num_nodes: int) -> None:
    if "resourcesPerNode" in trainer:
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            if kind in trainer["resourcesPerNode"]:
                resources[kind] = {**resources.get(kind, {}), **trainer["resourcesPerNode"][kind]}
        container["resources"] = resources
    pet = [
        {"name": "PET_NNODES", "value": str(num_nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(trainer.get("numProcPerNode", _auto_procs(container)))},
        {
            "name": "PET_NODE_RANK",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
            },
        },
        {"name": "PET_MASTER_ADDR", "value": f"{trainjob_name}-node-0-0.{trainjob_name}"},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
    ]
    container["env"] = upsert_env(upsert_env(container.get("env", []), trainer.get("env", [])), pet)
    container["ports"] = [*container.get("ports", []), {"containerPort": MASTER_PORT}]
    for field in ("image", "command", "args"):
        if field in trainer:
            container[field] = trainer[field]


def _auto_procs(container: dict) -> str:
    """numProcPerNode left out: `auto` (one per GPU) with a GPU, else the node's whole CPUs (requests, then limits)."""
    resources = container.get("resources", {})
    if "nvidia.com/gpu" in resources.get("limits", {}):
        return "auto"
    cpu = str(resources.get("requests", {}).get("cpu") or resources.get("limits", {}).get("cpu") or "0")
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return str(max(1, math.ceil(cores)))
