"""Fixtures for the local runner's tests: synthetic MNIST and the rendered CPU overlay."""

import subprocess
from pathlib import Path

import pytest
from runner_helpers import CPU_OVERLAY
from support.processes import REPO, venv_bin

from local_cluster.node.render import Rendering, render_overlay


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """300 training and 100 test digits, written by tests/support/synthetic_mnist.py in the trainer's environment."""
    out = tmp_path_factory.mktemp("mnist")
    script = REPO / "tests" / "support" / "synthetic_mnist.py"
    subprocess.run(
        [venv_bin("trainer"), str(script), str(out), "--train", "300", "--test", "100"], check=True, timeout=120
    )
    return out


@pytest.fixture(scope="session")
def cpu_rendering() -> Rendering:
    """overlays/cpu as kubectl kustomize renders it."""
    return Rendering.from_yaml(render_overlay(CPU_OVERLAY))
