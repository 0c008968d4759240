"""The PyTorchJob lifecycle the runner emulates, on tiny real processes: success, restarts, backoffLimit, policies."""

import io
import sys
from pathlib import Path

import pytest
from local_runner.errors import WorkloadFailedError
from local_runner.podspec import ContainerPlan
from local_runner.pytorchjob import JobPlan, Replica, run_job
from local_runner.supervisor import Console, Supervisor

pytestmark = pytest.mark.slow


def replica(rtype: str, code: str, policy: str = "OnFailure", index: int = 0) -> Replica:
    """A replica whose process runs the Python statements `code`."""
    plan = ContainerPlan(
        workload="PyTorchJob/test",
        label=rtype,
        prefix=rtype.lower(),
        argv=[sys.executable, "-c", code],
        env={},
        cwd=Path.cwd(),
        ports={},
        readiness=None,
        grace_seconds=5,
    )
    return Replica(rtype, index, policy, plan)


def fails_until(counter: Path, attempts: int) -> str:
    """Code that exits 1 on its first `attempts - 1` runs and 0 afterwards, counting runs in `counter`."""
    return (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); n = int(p.read_text() or 0) + 1 if p.exists() else 1; "
        f"p.write_text(str(n)); print('attempt', n); raise SystemExit(0 if n >= {attempts} else 1)"
    )


def run(replicas: list[Replica], backoff_limit: int) -> str:
    out = io.StringIO()
    console = Console(out)
    supervisor = Supervisor(console)
    try:
        run_job(JobPlan("PyTorchJob/test", replicas, backoff_limit, None), supervisor, console)
    finally:
        supervisor.stop_all()
    return out.getvalue()


def test_the_job_succeeds_when_the_master_exits_0_and_running_workers_are_left_alone():
    out = io.StringIO()
    console = Console(out)
    supervisor = Supervisor(console)
    master, worker = replica("Master", "print('done')"), replica("Worker", "import time; time.sleep(600)")
    try:
        run_job(JobPlan("PyTorchJob/test", [master, worker], 3, None), supervisor, console)
        assert "Master exited 0: job Succeeded" in out.getvalue()
        # The Training Operator does not stop Workers when the Master succeeds (cleanPodPolicy None keeps them).
        assert supervisor.processes[-1].poll() is None
    finally:
        supervisor.stop_all()
    assert "[master] done" in out.getvalue()


def test_a_failed_replica_is_restarted_under_on_failure(tmp_path):
    output = run([replica("Master", fails_until(tmp_path / "n", 3))], 3)
    assert "Master-0 exited with code 1; restart 1 of 3" in output
    assert "Master-0 exited with code 1; restart 2 of 3" in output
    assert "job Succeeded" in output


def test_the_job_fails_when_the_next_restart_would_reach_the_backoff_limit(tmp_path):
    # The operator fails the job once its pods' restart counts add up to backoffLimit: with a limit of 3,
    # a replica runs at most 3 times (2 restarts), and the third failure ends the job.
    counter = tmp_path / "runs"
    code = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); print('bad flag'); raise SystemExit(2)"
    )
    with pytest.raises(WorkloadFailedError) as info:
        run([replica("Master", code)], 3)
    assert str(info.value) == (
        "PyTorchJob/test: Master-0 exited with code 2 (restart 3 would reach backoffLimit 3): job Failed"
    )
    assert info.value.last_lines == ["bad flag"]
    assert counter.read_text() == "xxx"


def test_never_fails_at_once():
    with pytest.raises(WorkloadFailedError, match=r"exited with code 1 \(restartPolicy Never\): job Failed"):
        run([replica("Master", "raise SystemExit(1)", policy="Never")], 5)


def test_exit_code_restarts_only_retryable_codes(tmp_path):
    counter = tmp_path / "n"
    retryable = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); n = len(p.read_text()) if p.exists() else 0; "
        "p.write_text('x' * (n + 1)); raise SystemExit(137 if n == 0 else 0)"
    )
    assert "job Succeeded" in run([replica("Master", retryable, policy="ExitCode")], 3)
    with pytest.raises(WorkloadFailedError, match="restartPolicy ExitCode"):
        run([replica("Master", "raise SystemExit(1)", policy="ExitCode")], 3)
