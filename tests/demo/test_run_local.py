"""The runner end to end on overlays/cpu: from nothing to a prediction served through the frontend, and broken
manifests that must stop the run with a message naming the workload."""

import base64
import gzip
import json
import os
import re
import signal
import struct
import urllib.request
import zlib

import pytest
from runner_helpers import Runner, port_open, run_local, trainer_args_patch, write_overlay
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
        assert "PyTorchJob/mnist-ddp: Master exited 0: job Succeeded" in output
        assert "[trainer-master]" in output and "[classifier]" in output and "[frontend]" in output

        image = "data:image/png;base64," + base64.b64encode(first_test_digit_png(mnist_dir)).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{frontend_port}/api/predict",
            data=json.dumps({"image": image}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        probabilities = answer["probabilities"]
        assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3
        latest = (demo_dir / "pvc" / "mnist-pvc" / "models" / "mnist" / "LATEST").read_text().strip()
        assert answer["model_version"] == latest

        runner.proc.send_signal(signal.SIGINT)
        assert runner.proc.wait(timeout=60) == 130, runner.output()
    finally:
        runner.kill()
    assert not port_open(frontend_port) and not port_open(model_port), "a server outlived the runner"

    again = Runner(*args)
    try:
        again.wait_for("READY: open", STARTUP_TIMEOUT)
        output = again.output()
        assert f"PyTorchJob/mnist-ddp: skipped, {demo_dir}" in output
        assert "check: a drawn 1 sent through the frontend came back as" in output
        model_pid = int(re.search(r"SeldonDeployment/mnist-classifier: pid (\d+):", output).group(1))
        os.kill(model_pid, signal.SIGKILL)
        assert again.proc.wait(timeout=60) == 1, again.output()
    finally:
        again.kill()
    assert "FAILED SeldonDeployment/mnist-classifier container classifier: was killed by signal 9" in again.output()
    assert not port_open(frontend_port) and not port_open(model_port), "a server outlived the runner"


BROKEN = {
    "wrong trainer flag": (
        [trainer_args_patch("--epochz=1")],
        1,
        [
            "FAILED PyTorchJob/mnist-ddp:",
            "(restart 3 would reach backoffLimit 3): job Failed",
            "unrecognized arguments: --epochz=1",
        ],
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
        2,
        [
            "REFUSED Deployment/mnist-frontend container frontend: "
            "env FRONTEND_SELDON_ULR is not a setting of the frontend"
        ],
    ),
    "wrong path in a trainer flag": (
        [
            {
                "target": {"kind": "PyTorchJob", "name": "mnist-ddp"},
                "ops": [
                    {
                        "op": "test",
                        "path": "/spec/pytorchReplicaSpecs/Master/template/spec/containers/0/args/1",
                        "value": "--model-root=/mnt/pvc/models/mnist",
                    },
                    {
                        "op": "replace",
                        "path": "/spec/pytorchReplicaSpecs/Master/template/spec/containers/0/args/1",
                        "value": "--model-root=/mnt/pcv/models/mnist",
                    },
                ],
            }
        ],
        2,
        ["REFUSED PyTorchJob/mnist-ddp Master: arg --model-root /mnt/pcv/models/mnist is not under any volume mount"],
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
        2,
        [
            "REFUSED SeldonDeployment/mnist-classifier container classifier: graph parameter model_root "
            "/mnt/pvc/models/mnist is not under any volume mount (/mnt/pcv, /tmp)"
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
        "--exit-when-ready",
        timeout=150,
    )
    assert result.returncode == code, result.stdout
    for message in messages:
        assert message in result.stdout
