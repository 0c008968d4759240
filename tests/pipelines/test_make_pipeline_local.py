"""`make pipeline-local` end to end: the demo's real control plane, Training Operator and local node, and
mnist-ddp-pipeline run by kfp.local against it; a gate that passes (`promoted <version>`, exit 0) and one
that refuses (its reason, a non-zero exit, LATEST where it was); a SIGTERM in mid-training. Nothing is left running.

The first run finds no model: the demo trains one (the overlay's job, short here) and serves it, then the
pipeline trains a candidate with its own parameters. The second run finds LATEST: the demo only serves.
"""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from demo.runner_helpers import RUNNER_ENV, trainer_args_patch, write_overlay
from manifests.rendering import REPO
from support.processes import free_port, synthetic_mnist, venv_bin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RUN_TIMEOUT = 900
MODELS = Path("pvc") / "mnist-pvc" / "models" / "mnist"


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    """300 training and 100 test digits (tests/support/synthetic_mnist.py)."""
    return synthetic_mnist(tmp_path_factory.mktemp("mnist"))


def master_port_patch(port: int) -> dict:
    """Give the job's rendezvous port another number than 23456.

    Other jobs on a shared machine may hold 23456, and the local node, when it moves a container's
    port, does not move MASTER_PORT with it (the Training Operator sets it from this port).
    """
    path = "/spec/pytorchReplicaSpecs/{}/template/spec/containers/0/ports/0/containerPort"
    ops = [{"op": "replace", "path": path.format(r), "value": port} for r in ("Master", "Worker")]
    return {"target": {"kind": "PyTorchJob", "name": "mnist-ddp"}, "ops": ops}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mnist_dir) -> dict:
    """A DEMO_DIR, a short-training overlay and free ports, shared by the module's two runs, in this order."""
    root = tmp_path_factory.mktemp("pipeline-local")
    overlay = write_overlay(
        root / "short-training", [trainer_args_patch("--epochs=2", "--batch-size=32"), master_port_patch(free_port())]
    )
    env = {k: v for k, v in os.environ.items() if k not in (*RUNNER_ENV, "PIPELINE_ARGS", "MAKEFLAGS", "MAKELEVEL")}
    env.update(
        DEMO_DIR=str(root / "demo"),
        MNIST_DIR=str(mnist_dir),
        FRONTEND_PORT=str(free_port()),
        MODEL_PORT=str(free_port()),
        TENSORBOARD_PORT=str(free_port()),
        OVERLAY=str(overlay),
    )
    return env


def make_pipeline_local(env: dict, *pipeline_args: str) -> subprocess.CompletedProcess:
    """`make pipeline-local PIPELINE_ARGS=...`, as a user runs it; stdout and stderr apart."""
    return subprocess.run(
        ["make", "--no-print-directory", "pipeline-local", f"PIPELINE_ARGS={' '.join(pipeline_args)}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def assert_nothing_left_running(env: dict) -> None:
    demo_dir = env["DEMO_DIR"]
    left = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if demo_dir in cmdline:
            left.append(f"{entry.name}: {cmdline[:200]}")
    assert not left, "processes of the run outlived it:\n" + "\n".join(left)
    for name in ("FRONTEND_PORT", "MODEL_PORT", "TENSORBOARD_PORT"):
        assert not _listening(int(env[name])), f"{name} {env[name]} is still served"


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def report(result: subprocess.CompletedProcess) -> str:
    """The end of a run's output, for an assertion's message."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def promoted(setup) -> tuple[subprocess.CompletedProcess, str]:
    """The first run: a gate that passes (min_accuracy 0.2: two epochs on 300 synthetic digits)."""
    result = make_pipeline_local(setup, "--epochs", "2", "--batch-size", "32", "--min-accuracy", "0.2")
    assert_nothing_left_running(setup)
    last = result.stdout.splitlines()[-1] if result.stdout else ""
    match = re.fullmatch(r"promoted (v\d{8}T\d{6}Z-[0-9a-f]{6})", last)
    assert result.returncode == 0 and match, report(result)
    return result, match.group(1)


def test_a_passing_gate_ends_with_promoted_and_latest_names_the_version(setup, promoted):
    result, version = promoted
    out = result.stdout
    models = Path(setup["DEMO_DIR"]) / MODELS
    assert (models / "LATEST").read_text().strip() == version
    # The demo trained and served a first model; the pipeline's train replaced its finished job.
    assert "[demo] PyTorchJob/mnist-ddp: Succeeded" in out and "[demo] READY: open http://127.0.0.1:" in out
    assert "replacing finished PyTorchJob mnist-ddp (Succeeded)" in out
    assert "created PyTorchJob mnist-ddp in default" in out
    # The job's conditions as the Training Operator reported them through the API server.
    assert re.search(r"PyTorchJob mnist-ddp: Running PyTorchJobRunning", out), out[-6000:]
    assert re.search(r"PyTorchJob mnist-ddp: Succeeded PyTorchJobSucceeded", out), out[-6000:]
    # The Master's log, streamed by train: the run's own epochs and batch size, and a candidate only.
    assert re.search(r"\[mnist-ddp-master-0\] .* epoch 2/2: ", out)
    assert re.search(rf"\[mnist-ddp-master-0\] .* published \S+/models/mnist/{version} .*--no-promote", out), out
    assert f"candidate {version}" in out
    metadata = json.loads((models / version / "metadata.json").read_text())
    assert metadata["metrics"]["confusion_matrix"]
    assert f"promote {version}: accuracy " in out
    assert "[demo] stopping every process" in out


def test_a_refused_gate_says_why_exits_non_zero_and_latest_stays(setup, promoted):
    _, served = promoted
    models = Path(setup["DEMO_DIR"]) / MODELS
    result = make_pipeline_local(setup, "--epochs", "2", "--batch-size", "32", "--min-accuracy", "1.01")
    assert_nothing_left_running(setup)
    assert result.returncode != 0, report(result)
    last = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"gate refused (v\S+): accuracy 0\.\d{4} is below min_accuracy 1\.0100", last)
    assert match, report(result)
    candidate = match.group(1)
    assert candidate != served and (models / candidate / "metadata.json").is_file()
    assert (models / "LATEST").read_text().strip() == served
    # LATEST existed: the demo served it without training again.
    assert "[demo] PyTorchJob/mnist-ddp: not applied" in result.stdout
    assert "Inner task failed: 'refuse'" in result.stdout


def test_sigterm_in_mid_training_stops_the_step_and_the_demo(setup, promoted):
    _, served = promoted
    models = Path(setup["DEMO_DIR"]) / MODELS
    env = {**setup, "PYTHONPATH": os.pathsep.join([str(REPO / "pipelines"), str(REPO / "trainer")])}
    argv = [venv_bin("pipelines"), "-m", "mnist_pipeline.run_local", "--demo-python", venv_bin("tools")]
    argv += ["--epochs", "500", "--batch-size", "32"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"\[mnist-ddp-master-0\] .* epoch 2/500: ", line):
                proc.send_signal(signal.SIGTERM)
                break
        lines += proc.stdout.readlines()
        assert proc.wait(timeout=180) == 130, "".join(lines[-80:])
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lines[-1] == "interrupted: the demo and every step stopped\n", "".join(lines[-80:])
    assert_nothing_left_running(setup)
    assert (models / "LATEST").read_text().strip() == served
