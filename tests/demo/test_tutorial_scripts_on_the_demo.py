"""The tutorial's own scripts against the demo's cluster: deploy.sh cpu, predict.py, teardown.sh cpu.

This is what a reader does with `KUBECONFIG=$DEMO_DIR/kubeconfig` while `make demo` runs: the
objects are reconciled by the real operators and run by the local node, so deploy.sh sees the
job Succeeded and the SeldonDeployment Available, and teardown.sh's deletions stop the processes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_helpers import Runner, kubectl
from support.proc import running
from support.processes import REPO, free_port

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 240


def script(demo_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KUBECONFIG": str(demo_dir / "kubeconfig"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        [str(REPO / "scripts" / args[0]), *args[1:]],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


def test_deploy_predict_and_teardown_against_the_demos_cluster(tmp_path, mnist_dir):
    # overlays/cpu itself, so that deploy.sh applies the very job the demo ran (a job with other settings
    # would find a checkpoint it must not resume, and --retrain clears it through `kubectl run -i`, an
    # attach the local node does not serve).
    demo_dir, model_port = tmp_path / "demo", free_port()
    runner = Runner(
        "--demo-dir", demo_dir, "--mnist-dir", mnist_dir, "--frontend-port", free_port(), "--model-port", model_port
    )
    try:
        runner.wait_for("READY: open", STARTUP_TIMEOUT)
        deployed = script(demo_dir, "deploy.sh", "cpu", "--timeout", "300s")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        job = json.loads(kubectl(demo_dir, "get", "pytorchjob", "mnist-ddp", "-o", "json").stdout)
        assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in job["status"]["conditions"])
        sdep = json.loads(kubectl(demo_dir, "get", "sdep", "mnist-classifier", "-o", "json").stdout)
        assert sdep["status"]["state"] == "Available"

        predicted = subprocess.run(
            [str(REPO / ".venv" / "tools" / "bin" / "python"), str(REPO / "scripts" / "predict.py"),
             "--url", f"http://127.0.0.1:{model_port}/api/v1.0/predictions", "--mnist-index", "0",
             "--data-dir", str(mnist_dir)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stdout + predicted.stderr
        assert "model version:" in predicted.stdout, predicted.stdout

        servers = [
            int(p["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
            for p in json.loads(kubectl(demo_dir, "get", "pods", "-o", "json").stdout)["items"]
            # TensorBoard is the demo's own addition, not part of overlays/cpu: teardown.sh leaves it.
            if p["status"].get("phase") == "Running" and not p["metadata"]["name"].startswith("mnist-tensorboard-")
        ]
        # --keep-pvc: the demo's TensorBoard, which overlays/cpu does not hold, still mounts the claim, and
        # the claim's protection finalizer keeps it while a pod uses it (teardown.sh would wait for that).
        torn_down = script(demo_dir, "teardown.sh", "cpu", "--keep-pvc", timeout=180)
        assert torn_down.returncode == 0, torn_down.stdout + torn_down.stderr
        for what in ("pytorchjob", "sdep", "deployment/mnist-frontend"):
            done = kubectl(demo_dir, "get", what, "-o", "name", check=False)
            assert not done.stdout.strip(), f"teardown.sh left {done.stdout}"
        deadline = time.monotonic() + 60
        while running(servers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not running(servers), "a server outlived its pod"

        runner.proc.send_signal(signal.SIGINT)
        assert runner.proc.wait(timeout=90) == 130, runner.output()
    finally:
        runner.kill()
