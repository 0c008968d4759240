"""`run_job`, the train step's sequence of API calls, against a recorded API: what it creates, deletes,
refuses and reports. The API calls themselves are the thin JobClient (mnist_pipeline.kube)."""

import threading

import pytest

from mnist_pipeline import job as jobs
from mnist_pipeline import kube


class RecordedApi:
    """Answers `get` from a script of job states and records every call that changes something."""

    def __init__(self, existing: dict | None, states: list[dict]):
        self.namespace = "kubeflow"
        self.existing = existing
        self.states = list(states)
        self.calls: list[str] = []
        self.created: dict | None = None

    def get(self, name):
        if self.created is None:
            return self.existing
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def create(self, body):
        self.calls.append(f"create {body['metadata']['name']}")
        self.created = body
        return body

    def delete_and_wait(self, name, timeout=0):
        self.calls.append(f"delete {name}")
        self.existing = None

    def stream_master_logs(self, job_name, stop: threading.Event, write):
        write("[mnist-ddp-master-0] epoch 1/1: train loss 0.1")
        stop.wait()


def job_with(*conditions):
    return {
        "metadata": {"name": "mnist-ddp", "namespace": "kubeflow"},
        "spec": {"runPolicy": {"activeDeadlineSeconds": 60}},
        "status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions]},
    }


BODY = job_with()
RUNNING = job_with(("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", "running"))
SUCCEEDED = job_with(("Created", "", ""), ("Succeeded", "PyTorchJobSucceeded", "done"))
FAILED = job_with(("Created", "", ""), ("Failed", "PyTorchJobFailed", "1 Master replica(s) failed: exit code 1"))


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(kube, "POLL_SECONDS", 0.01)


def test_a_new_job_is_created_followed_and_its_master_log_streamed():
    api = RecordedApi(None, [RUNNING, RUNNING, SUCCEEDED])
    lines = []
    final = kube.run_job(api, BODY, write=lines.append)
    assert final is SUCCEEDED and api.calls == ["create mnist-ddp"]
    assert "[mnist-ddp-master-0] epoch 1/1: train loss 0.1" in lines
    assert "PyTorchJob mnist-ddp: Running PyTorchJobRunning running" in lines
    assert lines[-1] == "PyTorchJob mnist-ddp: Succeeded PyTorchJobSucceeded done"


def test_a_failed_job_fails_the_step_with_the_jobs_reason():
    api = RecordedApi(None, [RUNNING, FAILED])
    with pytest.raises(jobs.JobFailedError, match=r"^PyTorchJob mnist-ddp Failed: PyTorchJobFailed: 1 Master replica"):
        kube.run_job(api, BODY, write=lambda line: None)


def test_a_finished_job_of_the_same_name_is_deleted_first():
    api = RecordedApi(FAILED, [SUCCEEDED])
    kube.run_job(api, BODY, write=lambda line: None)
    assert api.calls == ["delete mnist-ddp", "create mnist-ddp"]


def test_a_running_job_of_the_same_name_is_left_alone():
    api = RecordedApi(RUNNING, [SUCCEEDED])
    with pytest.raises(jobs.JobRunningError, match="still Running"):
        kube.run_job(api, BODY, write=lambda line: None)
    assert api.calls == []


def test_a_job_that_never_finishes_times_out():
    api = RecordedApi(None, [RUNNING])
    with pytest.raises(TimeoutError, match="did not finish within 0 s"):
        kube.run_job(api, BODY, write=lambda line: None, timeout=0.05)


def test_a_job_deleted_under_the_step_fails_it():
    api = RecordedApi(None, [None])
    with pytest.raises(jobs.JobFailedError, match="was deleted while the step followed it"):
        kube.run_job(api, BODY, write=lambda line: None)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"epoch 1/2\nepo", b"ch 2/2\n"], ["epoch 1/2", "epoch 2/2"]),
        ([b"a\r\n", b"", b"b"], ["a", "b"]),
        ([b"\xff\n"], ["\ufffd"]),
        ([], []),
    ],
)
def test_a_followed_log_is_cut_into_lines_whatever_its_chunks(chunks, expected):
    assert list(kube.lines(chunks)) == expected
