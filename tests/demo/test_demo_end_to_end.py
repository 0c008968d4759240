"""The demo end to end on overlays/cpu, on the real control plane and operators with the local node: from nothing
to a prediction served through the frontend, a worker killed and a job deleted in mid-training, and broken
manifests that must stop the run with a message naming the workload."""

import base64
import gzip
import json
import os
import re
import signal
import struct
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
from runner_helpers import (
    CPU_OVERLAY,
    Runner,
    container_pid,
    kubectl,
    pod,
    port_open,
    run_local,
    trainer_args_patch,
    write_overlay,
    write_trainjob_overlay,
)
from support.proc import running
from support.processes import free_port

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 180


def first_test_digit_png(mnist_dir) -> bytes:
    """The first synthetic test digit as a grayscale PNG, the way the page's canvas sends a drawing."""
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    rows, cols = struct.unpack(">II", raw[8:16])
    pixels = raw[16 : 16 + rows * cols]
    scanlines = b"".join(b"\x00" + pixels[r * cols : (r + 1) * cols] for r in range(rows))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")
    )


def predict(frontend_port: int, mnist_dir) -> dict:
    image = "data:image/png;base64," + base64.b64encode(first_test_digit_png(mnist_dir)).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{frontend_port}/api/predict",
        data=json.dumps({"image": image}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.5)
    return result


def test_from_nothing_to_a_prediction_through_the_frontend(tmp_path, mnist_dir):
    overlay = write_overlay(tmp_path / "short-training", [trainer_args_patch("--epochs=2", "--batch-size=32")])
    frontend_port, model_port = free_port(), free_port()
    demo_dir = tmp_path / "demo"
    args = ["--overlay", overlay, "--demo-dir", demo_dir, "--mnist-dir", mnist_dir]
    args += ["--frontend-port", frontend_port, "--model-port", model_port]
    runner = Runner(*args)
    try:
        runner.wait_for("READY: open", STARTUP_TIMEOUT)
        output = runner.output()
        assert f"kubeconfig: {demo_dir / 'kubeconfig'}" in output
        assert "PyTorchJob/mnist-ddp: Succeeded" in output
        assert "[mnist-ddp-master-0/pytorch]" in output and "[mnist-ddp-worker-0/pytorch]" in output
        assert "[mnist-ddp-worker-0/init-pytorch] Name: mnist-ddp-master-0" in output
        # The real operators made the pods: the Training Operator the job's, the Deployment controller the rest.
        pods = json.loads(kubectl(demo_dir, "get", "pods", "-o", "json").stdout)["items"]
        owners = {p["metadata"]["name"]: p["metadata"]["ownerReferences"][0]["kind"] for p in pods}
        assert owners["mnist-ddp-master-0"] == owners["mnist-ddp-worker-0"] == "PyTorchJob"
        # The frontend, the model server (the Seldon stand-in's Deployment) and TensorBoard.
        assert sorted(owners.values()).count("ReplicaSet") == 3, owners
        job = json.loads(kubectl(demo_dir, "get", "pytorchjob", "mnist-ddp", "-o", "json").stdout)
        assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in job["status"]["conditions"])

        answer = predict(frontend_port, mnist_dir)
        probabilities = answer["probabilities"]
        assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3
        latest = (demo_dir / "pvc" / "mnist-pvc" / "models" / "mnist" / "LATEST").read_text().strip()
        assert answer["model_version"] == latest

        runner.proc.send_signal(signal.SIGINT)
        assert runner.proc.wait(timeout=90) == 130, runner.output()
    finally:
        runner.kill()
    assert not port_open(frontend_port) and not port_open(model_port), "a server outlived the demo"

    again = Runner(*args)
    try:
        again.wait_for("READY: open", STARTUP_TIMEOUT)
        assert f"PyTorchJob/mnist-ddp: not applied, {demo_dir}" in again.output()
        model = next(
            p["metadata"]["name"]
            for p in json.loads(kubectl(demo_dir, "get", "pods", "-o", "json").stdout)["items"]
            if p["metadata"]["name"].startswith("mnist-classifier-default-0-classifier-")
        )
        os.kill(container_pid(demo_dir, model), signal.SIGKILL)
        # restartPolicy Always: the node restarts the model server after its back-off, and it serves again.
        status = wait_until(
            lambda: (s := pod(demo_dir, model)["status"]["containerStatuses"][0])["restartCount"] == 1
            and s["ready"]
            and s,
            90,
            "restarted and ready",
        )
        assert status["lastState"]["terminated"]["exitCode"] == 137, status
        assert predict(frontend_port, mnist_dir)["model_version"] == latest
        again.proc.send_signal(signal.SIGINT)
        assert again.proc.wait(timeout=90) == 130, again.output()
    finally:
        again.kill()
    assert not port_open(frontend_port) and not port_open(model_port), "a server outlived the demo"


def training_demo(tmp_path, mnist_dir, epochs: int, *extra) -> tuple[Runner, Path]:
    """The demo in the background on a fresh DEMO_DIR, training `epochs` epochs; and its DEMO_DIR."""
    overlay = write_overlay(tmp_path / "training", [trainer_args_patch(f"--epochs={epochs}", "--batch-size=32")])
    demo_dir = tmp_path / "demo"
    runner = Runner(
        "--overlay", overlay, "--demo-dir", demo_dir, "--mnist-dir", mnist_dir,
        "--frontend-port", free_port(), "--model-port", free_port(), *extra,
    )  # fmt: skip
    return runner, demo_dir


def test_a_worker_killed_in_mid_training_is_restarted_and_the_run_resumes(tmp_path, mnist_dir):
    runner, demo_dir = training_demo(tmp_path, mnist_dir, 8, "--backoff-seconds", "1")
    try:
        runner.wait_for("epoch 2/8", STARTUP_TIMEOUT)
        os.kill(container_pid(demo_dir, "mnist-ddp-worker-0"), signal.SIGKILL)
        runner.wait_for("READY: open", STARTUP_TIMEOUT)
        output = runner.output()
        assert re.search(r"resuming from .*checkpoint.pt: [2-7] of 8 epochs done", output), output
        assert "PyTorchJob/mnist-ddp: Succeeded" in output
        worker = pod(demo_dir, "mnist-ddp-worker-0")["status"]["containerStatuses"][0]
        assert worker["restartCount"] >= 1 and worker["lastState"]["terminated"]["exitCode"] == 137, worker
    finally:
        runner.kill()


def test_kubectl_delete_pytorchjob_ends_its_processes(tmp_path, mnist_dir):
    runner, demo_dir = training_demo(tmp_path, mnist_dir, 50)
    try:
        runner.wait_for("epoch 1/50", STARTUP_TIMEOUT)
        trainers = [container_pid(demo_dir, p) for p in ("mnist-ddp-master-0", "mnist-ddp-worker-0")]
        kubectl(demo_dir, "delete", "pytorchjob", "mnist-ddp", "--wait=false")
        assert wait_until(lambda: not running(trainers), 60, "stopped")
        assert runner.proc.wait(timeout=120) == 1, runner.output()
        assert "FAILED PyTorchJob/mnist-ddp: deleted before it finished; its pods are gone" in runner.output()
    finally:
        runner.kill()


def test_the_trainjob_overlay_trains_through_trainer_v2_and_jobset(tmp_path, mnist_dir):
    overlay = write_trainjob_overlay(tmp_path / "trainjob", "--epochs=2", "--batch-size=32")
    demo_dir, frontend_port = tmp_path / "demo", free_port()
    result = run_local(
        "--overlay", overlay, "--demo-dir", demo_dir, "--mnist-dir", mnist_dir,
        "--frontend-port", frontend_port, "--model-port", free_port(), "--exit-when-ready", timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "TrainJob/mnist-ddp: Complete" in result.stdout
    # torchrun in both node pods, started by JobSet's Job: rank 0 publishes the model.
    assert "[mnist-ddp-node-0-0-" in result.stdout and "[mnist-ddp-node-0-1-" in result.stdout
    assert re.search(r"rank0 INFO published .*models/mnist/(v\S+)", result.stdout), result.stdout
    assert "check: a drawn 1 sent through the frontend came back as" in result.stdout


def test_the_kserve_overlay_serves_through_the_kserve_controller(published, mnist_dir):
    demo_dir = Path(published[published.index("--demo-dir") + 1])
    # The model is published: the demo does not apply the overlay's training job again.
    kserve = CPU_OVERLAY.parent / "cpu-kserve"
    frontend_port, model_port = free_port(), free_port()
    runner = Runner(
        "--overlay", kserve, "--demo-dir", demo_dir, "--frontend-port", frontend_port, "--model-port", model_port
    )  # fmt: skip
    try:
        runner.wait_for("READY: open", STARTUP_TIMEOUT)
        assert "InferenceService/mnist: available after" in runner.output()
        # The real controller made the predictor: a Deployment it owns, MODEL_PORT its REST port (V1 and V2).
        deployment = json.loads(kubectl(demo_dir, "get", "deployment", "mnist-predictor", "-o", "json").stdout)
        assert deployment["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
        with urllib.request.urlopen(f"http://127.0.0.1:{model_port}/v2/models/mnist/ready", timeout=10) as answer:
            assert answer.status == 200
        assert predict(frontend_port, mnist_dir)["model_version"]
        runner.proc.send_signal(signal.SIGINT)
        assert runner.proc.wait(timeout=90) == 130, runner.output()
    finally:
        runner.kill()


BROKEN = {
    "wrong trainer flag": (
        [trainer_args_patch("--epochz=1")],
        1,
        ["FAILED PyTorchJob/mnist-ddp: Failed: ", "unrecognized arguments: --epochz=1"],
    ),
    "wrong env name": (
        [
            {
                "target": {"kind": "Deployment", "name": "mnist-frontend"},
                "ops": [
                    {
                        "op": "test",
                        "path": "/spec/template/spec/containers/0/env/0/name",
                        "value": "FRONTEND_SELDON_URL",
                    },
                    {
                        "op": "replace",
                        "path": "/spec/template/spec/containers/0/env/0/name",
                        "value": "FRONTEND_SELDON_ULR",
                    },
                ],
            }
        ],
        1,
        [
            "FAILED Deployment/mnist-frontend Pod/mnist-frontend-",
            " container frontend: env FRONTEND_SELDON_ULR is not a setting of the frontend",
        ],
    ),
    "wrong mount path of the model server": (
        [
            {
                "target": {"kind": "SeldonDeployment", "name": "mnist-classifier"},
                "ops": [
                    {
                        "op": "test",
                        "path": "/spec/predictors/0/componentSpecs/0/spec/containers/0/volumeMounts/0/mountPath",
                        "value": "/mnt/pvc",
                    },
                    {
                        "op": "replace",
                        "path": "/spec/predictors/0/componentSpecs/0/spec/containers/0/volumeMounts/0/mountPath",
                        "value": "/mnt/pcv",
                    },
                ],
            }
        ],
        1,
        [
            "FAILED SeldonDeployment/mnist-classifier Pod/mnist-classifier-default-0-classifier-",
            " container classifier: graph parameter model_root /mnt/pvc/models/mnist is not under any volume mount "
            "(/mnt/pcv, /tmp)",
        ],
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_broken_manifest_stops_the_run_naming_the_workload(tmp_path, mnist_dir, case):
    patches, code, messages = BROKEN[case]
    overlay = write_overlay(tmp_path / "broken", patches)
    result = run_local(
        "--overlay",
        overlay,
        "--demo-dir",
        tmp_path / "demo",
        "--mnist-dir",
        mnist_dir,
        "--frontend-port",
        free_port(),
        "--model-port",
        free_port(),
        "--backoff-seconds",
        "1",
        "--exit-when-ready",
        timeout=240,
    )
    assert result.returncode == code, result.stdout
    for message in messages:
        assert message in result.stdout
