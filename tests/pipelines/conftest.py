"""Fixtures: overlays/cpu rendered once, and a model root with published versions (no torch needed)."""

import copy
import json
from pathlib import Path

import pytest
from manifests.conftest import require_crds  # noqa: F401 (a fixture, shared with the manifest tests)
from manifests.rendering import REPO, one, render

SERVED = "v20261201T100000Z-aaaaaa"
CANDIDATE = "v20261201T110000Z-bbbbbb"


@pytest.fixture(scope="session")
def cpu_rendering() -> list[dict]:
    """`kubectl kustomize overlays/cpu`, rendered once."""
    return render(REPO / "overlays" / "cpu")


@pytest.fixture
def rendered_job(cpu_rendering) -> dict:
    """The PyTorchJob that `kubectl apply -k overlays/cpu` creates (a copy each test may change)."""
    return copy.deepcopy(one(cpu_rendering, "PyTorchJob", "mnist-ddp"))


def confusion(correct_per_class: int, mistakes: int) -> list[list[int]]:
    """A 10x10 confusion matrix with `mistakes` threes taken for fives."""
    matrix = [[correct_per_class if row == col else 0 for col in range(10)] for row in range(10)]
    matrix[3][5] = mistakes
    return matrix


def write_version(root: Path, version: str, accuracy: float, loss: float = 0.05, matrix=None) -> None:
    """A published version's directory as the trainer leaves it, as far as the pipeline reads it."""
    (root / version).mkdir(parents=True)
    (root / version / "model.pt").write_bytes(b"weights")
    metrics = {"test_accuracy": accuracy, "test_loss": loss, "eval_split": "test", "eval_images": 1000}
    metrics["confusion_matrix"] = matrix if matrix is not None else confusion(99, 10)
    metadata = {"version": version, "class_names": [str(i) for i in range(10)], "metrics": metrics}
    (root / version / "metadata.json").write_text(json.dumps(metadata))


@pytest.fixture
def model_root(tmp_path) -> Path:
    """A model root serving SERVED (accuracy 0.990) with CANDIDATE published beside it (accuracy 0.991)."""
    root = tmp_path / "models"
    write_version(root, SERVED, 0.990)
    write_version(root, CANDIDATE, 0.991)
    (root / "LATEST").write_text(SERVED + "\n")
    return root
