"""Helpers for the local runner's tests: temporary kustomize overlays on top of overlays/cpu, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from support.processes import REPO

RUN_LOCAL = REPO / "scripts" / "run_local.py"
CPU_OVERLAY = REPO / "overlays" / "cpu"
# The runner's settings from the environment must not leak from the shell into a test.
RUNNER_ENV = ("MNIST_DIR", "DEMO_DIR", "FRONTEND_PORT", "MODEL_PORT", "RETRAIN")


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


def runner_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in RUNNER_ENV}


def run_local(*args, timeout: float) -> subprocess.CompletedProcess:
    """Run scripts/run_local.py with `args` to completion; output is stdout and stderr together."""
    return subprocess.run(
        [sys.executable, str(RUN_LOCAL), *map(str, args)],
        cwd=REPO,
        env=runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
