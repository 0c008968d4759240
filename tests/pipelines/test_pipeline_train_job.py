"""The `train` step: the PyTorchJob it builds from the rendered overlay, and what it does about existing jobs."""

import copy

import pytest
from manifests.strict_schema import custom_resource_errors

from mnist_pipeline import job as jobs

RUN_ID = "4f1c2d9e-0000-4000-8000-000000000001"


def build(rendered, **overrides):
    settings = {
        "workers": 3,
        "epochs": 4,
        "batch_size": 256,
        "image": "registry.example.com/me/mnist-trainer:1.2.3",
        "run_id": RUN_ID,
        "namespace": "kubeflow",
    }
    return jobs.build_job(rendered, **{**settings, **overrides})


def args_of(job, replica_type):
    return jobs.trainer_container(job["spec"]["pytorchReplicaSpecs"][replica_type]["template"]["spec"], "")["args"]


def test_the_job_is_the_rendered_one_with_the_run_parameters(rendered_job):
    job = build(rendered_job)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert job["metadata"]["name"] == "mnist-ddp" and job["metadata"]["namespace"] == "kubeflow"
    assert job["metadata"]["annotations"][jobs.RUN_ANNOTATION] == RUN_ID
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    for replica_type in ("Master", "Worker"):
        container = jobs.trainer_container(replicas[replica_type]["template"]["spec"], replica_type)
        assert container["image"] == "registry.example.com/me/mnist-trainer:1.2.3"
        assert args_of(job, replica_type) == [
            "--data-dir=/mnt/pvc/data/mnist",
            "--model-root=/mnt/pvc/models/mnist",
            "--tensorboard-dir=/mnt/pvc/tensorboard/mnist-ddp",
            "--backend=gloo",
            "--epochs=4",
            "--batch-size=256",
            f"--checkpoint-dir=/mnt/pvc/checkpoints/mnist-ddp-{RUN_ID}",
            f"--version-file=/mnt/pvc/pipelines/mnist-ddp-{RUN_ID}/version",
            "--no-promote",
        ]
    assert jobs.version_file(job) == f"/mnt/pvc/pipelines/mnist-ddp-{RUN_ID}/version"
    assert jobs.model_root(job) == "/mnt/pvc/models/mnist"


def test_nothing_else_changes(rendered_job):
    job = build(rendered_job, workers=1, image="")
    for replica_type in ("Master", "Worker"):
        for spec in (job, rendered_job):
            jobs.trainer_container(spec["spec"]["pytorchReplicaSpecs"][replica_type]["template"]["spec"], "").pop(
                "args"
            )
    job["metadata"].pop("namespace")
    job["metadata"].pop("annotations")
    assert job == rendered_job, "only the namespace, the run annotation, the replicas and the args differ"


def test_the_job_validates_strictly_against_the_pytorchjob_crd(rendered_job, require_crds):
    assert custom_resource_errors(build(rendered_job)) == []


def test_the_rendered_manifest_is_not_changed(rendered_job):
    before = copy.deepcopy(rendered_job)
    build(rendered_job, workers=0)
    assert rendered_job == before


def test_no_workers_is_a_single_process_job(rendered_job):
    job = build(rendered_job, workers=0, batch_size=100)
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 100, "workers": 2}, "batch_size 100 must be divisible by the world size 3"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"run_id": ""}, "run id '' must be a non-empty name"),
        ({"run_id": "../x"}, "without '/'"),
    ],
)
def test_bad_parameters_are_clear_errors(rendered_job, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(rendered_job, **overrides)


def test_a_manifest_that_is_not_a_pytorchjob_is_refused(rendered_job):
    with pytest.raises(ValueError, match="must be a rendered PyTorchJob, got kind 'Deployment'"):
        build({**rendered_job, "kind": "Deployment"})


@pytest.mark.parametrize(
    ("args", "values", "expected"),
    [
        (["--epochs=15", "--lr=0.1"], {"epochs": "3"}, ["--lr=0.1", "--epochs=3"]),
        (["--promote", "--lr=0.1"], {"no-promote": None}, ["--lr=0.1", "--no-promote"]),
        (["--no-promote"], {"no-promote": None}, ["--no-promote"]),
        ([], {"batch-size": "64"}, ["--batch-size=64"]),
    ],
)
def test_set_flags_replaces_or_appends(args, values, expected):
    assert jobs.set_flags(args, values) == expected


def status(*conditions):
    """A job as the API returns it, with these (type, status, reason, message) conditions in order."""
    return {
        "metadata": {"name": "mnist-ddp", "namespace": "kubeflow", "annotations": {jobs.RUN_ANNOTATION: "run-1"}},
        "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]},
    }


CREATED = ("Created", "True", "PyTorchJobCreated", "PyTorchJob mnist-ddp is created.")
RUNNING = ("Running", "True", "PyTorchJobRunning", "PyTorchJob mnist-ddp is running.")
SUCCEEDED = ("Succeeded", "True", "PyTorchJobSucceeded", "PyTorchJob mnist-ddp is successfully completed.")
FAILED = ("Failed", "True", "PyTorchJobFailed", "PyTorchJob mnist-ddp is failed because 1 Master replica(s) failed.")


@pytest.mark.parametrize(
    ("existing", "action"),
    [
        (None, jobs.Action.CREATE),
        (status(), jobs.Action.REFUSE),
        (status(CREATED), jobs.Action.REFUSE),
        (status(CREATED, RUNNING), jobs.Action.REFUSE),
        (status(CREATED, ("Running", "False", "", ""), ("Restarting", "True", "PyTorchJobRestarting", "")), "refuse"),
        (status(CREATED, ("Running", "False", "", ""), SUCCEEDED), jobs.Action.REPLACE),
        (status(CREATED, ("Running", "False", "", ""), FAILED), jobs.Action.REPLACE),
    ],
)
def test_a_finished_job_is_replaced_and_an_unfinished_one_never(existing, action):
    assert jobs.existing_job_action(existing) is jobs.Action(action)


def test_the_refusal_says_what_runs_and_how_to_clear_it():
    message = jobs.refusal_message(status(CREATED, RUNNING))
    assert "PyTorchJob mnist-ddp in kubeflow is still Running (created by run run-1)" in message
    assert "kubectl -n kubeflow delete pytorchjob mnist-ddp" in message


def test_a_failed_job_fails_the_step_with_its_own_reason():
    with pytest.raises(jobs.JobFailedError) as raised:
        jobs.check_finished(status(CREATED, ("Running", "False", "", ""), FAILED))
    assert str(raised.value) == (
        "PyTorchJob mnist-ddp Failed: PyTorchJobFailed: PyTorchJob mnist-ddp is failed because 1 Master replica(s) "
        "failed."
    )


def test_a_running_or_succeeded_job_does_not_raise():
    assert not jobs.check_finished(status(CREATED, RUNNING)).finished
    assert jobs.check_finished(status(CREATED, SUCCEEDED)).succeeded


def test_the_master_selector_uses_the_operator_labels():
    assert jobs.master_selector("mnist-ddp") == (
        "training.kubeflow.org/job-name=mnist-ddp,training.kubeflow.org/replica-type=master"
    )
