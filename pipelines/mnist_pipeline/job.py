"""The `train` step's decisions, as pure functions of dicts: the PyTorchJob it creates from the rendered
manifest, whether an existing job of that name may be replaced, and what the job's conditions say."""

import copy
import enum
from dataclasses import dataclass

PVC_MOUNT = "/mnt/pvc"
TRAINER_CONTAINER = "pytorch"
# Terminal conditions of a Training Operator v1 job (kubeflow.org/v1 JobConditionType).
SUCCEEDED, FAILED = "Succeeded", "Failed"
# The labels the Training Operator puts on the pods of a job.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
# The pipeline run that created a job, so that `kubectl get pytorchjob -L ...` shows it.
RUN_ANNOTATION = "pipelines.kubeflow.org/run-id"


class JobFailedError(RuntimeError):
    """The PyTorchJob ended Failed; the message carries the job's own reason and message."""


class JobRunningError(RuntimeError):
    """A PyTorchJob of the same name is still running: the step never replaces it."""


@dataclass(frozen=True)
class RunPaths:
    """Where one pipeline run's training keeps its state on the shared volume."""

    checkpoint_dir: str
    version_file: str

    @classmethod
    def for_run(cls, job_name: str, run_id: str) -> "RunPaths":
        """Paths unique to (job, run): a new run never resumes, or reports, a previous run's training."""
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise ValueError(f"run id {run_id!r} must be a non-empty name without '/'")
        return cls(
            checkpoint_dir=f"{PVC_MOUNT}/checkpoints/{job_name}-{run_id}",
            version_file=f"{PVC_MOUNT}/pipelines/{job_name}-{run_id}/version",
        )


def set_flags(args: list[str], values: dict[str, str | None]) -> list[str]:
    """`args` with each `--name=value` set: replaced where present, appended otherwise.

    A value of None makes `--name` a bare switch (such as `--no-promote`); the opposite switch
    (`--promote`) is dropped, so the two never both appear.
    """
    result = list(args)
    for name, value in values.items():
        switch = f"--{name}"
        opposite = f"--{name.removeprefix('no-')}" if name.startswith("no-") else f"--no-{name}"
        result = [a for a in result if a not in (switch, opposite) and not a.startswith(f"{switch}=")]
        result.append(switch if value is None else f"{switch}={value}")
    return result


def build_job(
    rendered: dict,
    *,
    workers: int,
    epochs: int,
    batch_size: int,
    image: str,
    run_id: str,
    namespace: str,
) -> dict:
    """The PyTorchJob that `train` creates: the rendered manifest with the run's parameters applied.

    Every replica's trainer container gets the image (if not empty), the epochs and batch size,
    a checkpoint directory and version file of its own, and `--no-promote`: the pipeline's
    `promote` step, not the trainer, moves LATEST.
    """
    if rendered.get("kind") != "PyTorchJob" or "pytorchReplicaSpecs" not in rendered.get("spec", {}):
        raise ValueError(f"the job manifest must be a rendered PyTorchJob, got kind {rendered.get('kind')!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    world_size = 1 + workers
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the world size {world_size} (1 Master + {workers} Workers)"
        )
    job = copy.deepcopy(rendered)
    name = job["metadata"]["name"]
    paths = RunPaths.for_run(name, run_id)
    metadata = job["metadata"]
    metadata["namespace"] = namespace
    metadata.setdefault("annotations", {})[RUN_ANNOTATION] = run_id
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        metadata.pop(key, None)
    job.pop("status", None)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    if "Master" not in replicas:
        raise ValueError(f"PyTorchJob {name} has no Master replica, whose logs the step follows")
    if workers == 0:
        replicas.pop("Worker", None)
    else:
        if "Worker" not in replicas:
            raise ValueError(f"PyTorchJob {name} has no Worker replica to scale to {workers}")
        replicas["Worker"]["replicas"] = workers
    flags = {
        "epochs": str(epochs),
        "batch-size": str(batch_size),
        "checkpoint-dir": paths.checkpoint_dir,
        "version-file": paths.version_file,
        "no-promote": None,
    }
    for replica_type, replica in replicas.items():
        container = trainer_container(replica["template"]["spec"], f"{name}/{replica_type}")
        if image:
            container["image"] = image
        container["args"] = set_flags(container.get("args", []), flags)
    model_root(job)
    return job


def trainer_container(pod_spec: dict, where: str) -> dict:
    """The trainer container of a replica's pod spec; fails with where it looked."""
    for container in pod_spec.get("containers", []):
        if container["name"] == TRAINER_CONTAINER:
            return container
    raise ValueError(f"{where} has no container named {TRAINER_CONTAINER!r}")


def version_file(job: dict) -> str:
    """The version file that build_job gave the Master's trainer."""
    args = trainer_container(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"], "Master")["args"]
    return [a.split("=", 1)[1] for a in args if a.startswith("--version-file=")][-1]


class Action(enum.Enum):
    """What to do about a job of the same name that already exists."""

    CREATE = "create"  # none exists
    REPLACE = "replace"  # one exists and has finished: delete it, then create
    REFUSE = "refuse"  # one exists and has not finished: leave it alone and fail


@dataclass(frozen=True)
class Outcome:
    """Where a job stands: finished or not, and the last condition's reason and message."""

    finished: bool
    succeeded: bool
    condition: str
    reason: str
    message: str


def outcome(job: dict) -> Outcome:
    """Read a PyTorchJob's status conditions: terminal once Succeeded or Failed is True."""
    conditions = [c for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"]
    for condition in conditions:
        if condition.get("type") in (SUCCEEDED, FAILED):
            return Outcome(
                True,
                condition["type"] == SUCCEEDED,
                condition["type"],
                condition.get("reason", ""),
                condition.get("message", ""),
            )
    latest = conditions[-1] if conditions else {}
    return Outcome(False, False, latest.get("type", "Pending"), latest.get("reason", ""), latest.get("message", ""))


def existing_job_action(existing: dict | None) -> Action:
    """Create when there is no job of that name, replace a finished one, refuse one that is still going."""
    if existing is None:
        return Action.CREATE
    return Action.REPLACE if outcome(existing).finished else Action.REFUSE


def refusal_message(existing: dict) -> str:
    """Why the step will not touch `existing`, and what the user can do."""
    state = outcome(existing)
    name, namespace = existing["metadata"]["name"], existing["metadata"].get("namespace", "")
    run = existing["metadata"].get("annotations", {}).get(RUN_ANNOTATION, "outside a pipeline")
    return (
        f"PyTorchJob {name} in {namespace} is still {state.condition} (created by run {run}): this step never "
        f"replaces a job that has not finished. Wait for it, or delete it: kubectl -n {namespace} delete "
        f"pytorchjob {name}"
    )


def failure_message(job: dict) -> str:
    """The step's error for a Failed job, in the job's own words."""
    state = outcome(job)
    detail = f"{state.reason}: {state.message}" if state.message else state.reason or "no reason given"
    return f"PyTorchJob {job['metadata']['name']} {state.condition}: {detail}"


def check_finished(job: dict) -> Outcome:
    """The outcome of a job; raises JobFailedError with the job's reason if it Failed."""
    state = outcome(job)
    if state.finished and not state.succeeded:
        raise JobFailedError(failure_message(job))
    return state


def master_selector(job_name: str) -> str:
    """Label selector of the Master pod of a job."""
    return f"{JOB_NAME_LABEL}={job_name},{REPLICA_TYPE_LABEL}=master"


def model_root(job: dict) -> str:
    """The model root (`--model-root`) of the Master's trainer: where the candidate is published."""
    args = trainer_container(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"], "Master")["args"]
    roots = [a.split("=", 1)[1] for a in args if a.startswith("--model-root=")]
    if not roots:
        raise ValueError("the Master's trainer has no --model-root=...: the candidate could not be found")
    return roots[-1]
