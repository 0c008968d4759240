"""evaluate and promote, and the gate between them, run by kfp.local's SubprocessRunner on a local model root.

No cluster and no network: the runner executes each component's body in a subprocess of this
environment (use_venv=False installs nothing) and keeps its outputs under pipeline_root.
"""

import json
import os

import pytest
from conftest import CANDIDATE, SERVED, write_version
from kfp import dsl, local
from manifests.rendering import REPO

from mnist_ddp import model_store
from mnist_pipeline.components import evaluate, promote
from mnist_pipeline.pipeline import add_gate

pytestmark = [
    pytest.mark.slow,
    # The runner warns that the components name a custom image; here this environment stands in for it.
    pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom"),
    # Requests and limits are for the cluster; the local runner says it ignores them.
    pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner"),
]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """kfp.local with the SubprocessRunner; the subprocesses import the pipeline package and model_store."""
    paths = [str(REPO / "pipelines"), str(REPO / "trainer"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "outputs"))


def test_evaluate_writes_metrics_and_the_confusion_matrix(runner, model_root):
    task = evaluate(candidate=CANDIDATE, model_root=str(model_root), min_accuracy=0.985, max_regression=0.002)
    assert task.outputs["passed"] is True
    assert task.outputs["reason"].startswith(f"promote {CANDIDATE}: accuracy 0.9910")
    assert task.outputs["metrics"].metadata == {"accuracy": 0.991, "loss": 0.05, "served_accuracy": 0.99}
    matrix = task.outputs["confusion"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == [str(i) for i in range(10)]
    rows = [row["row"] for row in matrix["rows"]]
    expected = json.loads((model_root / CANDIDATE / "metadata.json").read_text())["metrics"]["confusion_matrix"]
    assert rows == expected


def test_promote_moves_latest_and_outputs_the_version(runner, model_root):
    task = promote(candidate=CANDIDATE, model_root=str(model_root))
    assert task.output == CANDIDATE
    assert model_store.read_latest(model_root) == CANDIDATE


@dsl.pipeline(name="gate-and-promote")
def gate_and_promote(candidate: str, model_root: str, min_accuracy: float = 0.985, max_regression: float = 0.002):
    """The pipeline's gate and promotion, without the train step that needs a cluster."""
    add_gate(candidate, model_root, min_accuracy, max_regression)


def test_a_passing_candidate_is_promoted(runner, model_root):
    gate_and_promote(candidate=CANDIDATE, model_root=str(model_root))
    assert model_store.read_latest(model_root) == CANDIDATE


def test_a_refused_candidate_fails_the_run_and_latest_stays(runner, model_root, capfd):
    regressed = "v20261201T120000Z-cccccc"
    write_version(model_root, regressed, 0.986)
    with pytest.raises(RuntimeError, match=r"gate-and-promote.*FAILURE"):
        gate_and_promote(candidate=regressed, model_root=str(model_root))
    assert model_store.read_latest(model_root) == SERVED
    logs = capfd.readouterr()
    assert f"RuntimeError: gate refused {regressed}: accuracy 0.9860 is 0.0040 below the served version's 0.9900" in (
        logs.out + logs.err
    )
