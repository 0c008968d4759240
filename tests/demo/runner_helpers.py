"""Helpers for the demo's tests: temporary kustomize overlays on top of overlays/cpu, the demo's command line."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from support.processes import REPO, free_port

DEMO = [sys.executable, "-m", "local_cluster", "demo"]
CPU_OVERLAY = REPO / "overlays" / "cpu"
# The demo's settings from the environment must not leak from the shell into a test.
RUNNER_ENV = (
    "MNIST_DIR",
    "DEMO_DIR",
    "FRONTEND_PORT",
    "MODEL_PORT",
    "DEMO_BIND_ADDRESS",
    "RETRAIN",
    "OVERLAY",
    "DEMO_BACKOFF_SECONDS",
    "TENSORBOARD_PORT",
)


def demo_command(args) -> list[str]:
    """The demo's command line; TensorBoard on a free port unless the test chooses one."""
    words = [str(a) for a in args]
    if "--tensorboard-port" not in words:
        words += ["--tensorboard-port", str(free_port())]
    return [*DEMO, *words]


def write_overlay(folder: Path, patches: list[dict]) -> Path:
    """A kustomization in `folder` that takes overlays/cpu and applies JSON6902 `patches` ({target, ops}).

    This is what a user does to change the example without editing it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(CPU_OVERLAY, folder)],
        "patches": [{"target": p["target"], "patch": json.dumps(p["ops"])} for p in patches],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return folder


def trainer_args_patch(*extra: str) -> dict:
    """Append arguments to the trainer's command in every replica."""
    ops = [
        {"op": "add", "path": f"/spec/pytorchReplicaSpecs/{r}/template/spec/containers/0/args/-", "value": arg}
        for r in ("Master", "Worker")
        for arg in extra
    ]
    return {"target": {"kind": "PyTorchJob", "name": "mnist-ddp"}, "ops": ops}


def write_trainjob_overlay(folder: Path, *extra: str) -> Path:
    """overlays/cpu-trainjob with `extra` appended to the TrainJob's trainer arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    ops = [{"op": "add", "path": "/spec/trainer/args/-", "value": arg} for arg in extra]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(CPU_OVERLAY.parent / "cpu-trainjob", folder)],
        "patches": [{"target": {"kind": "TrainJob", "name": "mnist-ddp"}, "patch": json.dumps(ops)}],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return folder


def runner_env() -> dict[str, str]:
    """The environment without the demo's settings; CRDS_DIR stays (the demo installs those CRDs)."""
    return {k: v for k, v in os.environ.items() if k not in RUNNER_ENV}


def run_local(*args, timeout: float) -> subprocess.CompletedProcess:
    """Run the demo with `args` to completion; output is stdout and stderr together (shown on a timeout too)."""
    try:
        return _run_demo(args, timeout)
    except subprocess.TimeoutExpired as expired:
        output = expired.output.decode(errors="replace") if isinstance(expired.output, bytes) else expired.output
        raise AssertionError(f"the demo did not finish in {timeout} s:\n{(output or '')[-20000:]}") from None


def _run_demo(args, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        demo_command(args),
        cwd=REPO,
        env=runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Runner:
    """The demo in the background, its output collected line by line."""

    def __init__(self, *args, as_background_job: bool = False):
        """`as_background_job`: started with SIGINT ignored, as a non-interactive shell starts `cmd &`."""
        self.proc = subprocess.Popen(
            demo_command(args),
            cwd=REPO,
            env=runner_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if as_background_job else None,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, f"the runner exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.output()}"
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def kubectl(demo_dir: Path, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """kubectl against the demo's cluster (its kubeconfig is `<demo_dir>/kubeconfig`)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), f"--kubeconfig={demo_dir / 'kubeconfig'}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def pod(demo_dir: Path, name: str) -> dict:
    """The pod object as the API server has it."""
    return json.loads(kubectl(demo_dir, "get", "pod", name, "-o", "json").stdout)


def container_pid(demo_dir: Path, pod_name: str) -> int:
    """The pid of the program of the pod's first container (the node reports its keeper as containerID)."""
    status = pod(demo_dir, pod_name)["status"]["containerStatuses"][0]
    keeper = int(status["containerID"].removeprefix("local://"))
    children = [int(p) for p in Path(f"/proc/{keeper}/task/{keeper}/children").read_text().split()]
    return children[0]
