"""Fixtures for the local runner's tests: synthetic MNIST and the rendered CPU overlay."""

from pathlib import Path

import pytest
from runner_helpers import CPU_OVERLAY, run_local, trainer_args_patch, write_overlay
from support.processes import free_port, synthetic_mnist

from local_cluster.node.render import Rendering, render_overlay


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """300 training and 100 test digits (tests/support/synthetic_mnist.py)."""
    return synthetic_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def cpu_rendering() -> Rendering:
    """overlays/cpu as kubectl kustomize renders it."""
    return Rendering.from_yaml(render_overlay(CPU_OVERLAY))


@pytest.fixture(scope="session")
def published(tmp_path_factory, mnist_dir) -> list:
    """The demo's arguments for a DEMO_DIR whose model is already trained (one short training for the session)."""
    root = tmp_path_factory.mktemp("published")
    overlay = write_overlay(root / "short-training", [trainer_args_patch("--epochs=1", "--batch-size=32")])
    args = ["--demo-dir", root / "demo", "--mnist-dir", mnist_dir]
    result = run_local(
        "--overlay", overlay, *args, "--frontend-port", free_port(), "--model-port", free_port(), "--exit-when-ready",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    return ["--overlay", overlay, *args]
