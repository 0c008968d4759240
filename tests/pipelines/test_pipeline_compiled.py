"""`make pipeline`'s output: up to date with the code and the overlay, and wired as documented."""

import ast
import json

import pytest
import yaml
from manifests.rendering import REPO, find_kubectl

from mnist_pipeline import pipeline

COMPILED = REPO / "pipelines" / "mnist_pipeline.yaml"
STEPS = ("train", "evaluate", "promote", "refuse")


@pytest.fixture(scope="module")
def compiled() -> dict:
    """The pipeline spec, with its second document (the Kubernetes platform spec) under `platforms`."""
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    return {**spec, **platform}


def test_the_committed_pipeline_is_what_make_pipeline_compiles(tmp_path):
    fresh = tmp_path / "mnist_pipeline.yaml"
    pipeline.compile_pipeline(pipeline.render_overlay(REPO / "overlays" / "cpu", find_kubectl()), fresh)
    assert fresh.read_text() == COMPILED.read_text(), (
        f"{COMPILED.relative_to(REPO)} is out of date with pipelines/ or overlays/cpu: run `make pipeline`"
    )


def test_the_pipeline_is_named_and_takes_the_documented_parameters(compiled, cpu_rendering):
    assert compiled["pipelineInfo"]["name"] == "mnist-ddp-pipeline"
    parameters = compiled["root"]["inputDefinitions"]["parameters"]
    defaults = {name: spec.get("defaultValue") for name, spec in parameters.items()}
    job = next(obj for obj in cpu_rendering if obj["kind"] == "PyTorchJob")
    assert defaults == {
        "workers": 1.0,
        "epochs": 15.0,
        "batch_size": 256.0,
        "image": "registry.example.com/kubeflow-mnist/mnist-trainer:0.1.0-cpu",
        "min_accuracy": 0.985,
        "max_regression": 0.002,
        "namespace": "",
        "job_manifest": defaults["job_manifest"],
    }
    assert json.loads(defaults["job_manifest"]) == job


def test_every_step_mounts_the_volume_runs_as_the_example_user_and_is_never_cached(compiled):
    executors = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == sorted(f"exec-{step}" for step in STEPS)
    for name, executor in executors.items():
        assert [(m["constant"], m["mountPath"]) for m in executor["pvcMount"]] == [("mnist-pvc", "/mnt/pvc")], name
        assert executor["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
    tasks = dict(compiled["root"]["dag"]["tasks"])
    for branch in compiled["components"]["comp-condition-branches-1"]["dag"]["tasks"].values():
        tasks.update(compiled["components"][branch["componentRef"]["name"]]["dag"]["tasks"])
    assert sorted(t for t in tasks if not t.startswith("condition")) == sorted(STEPS)
    for name in STEPS:
        assert tasks[name]["cachingOptions"] == {}, f"{name} must not be cached"


def test_train_gets_the_run_id_and_promote_runs_only_when_the_gate_passes(compiled):
    train = compiled["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    branches = compiled["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = sorted(branch["triggerPolicy"]["condition"] for branch in branches.values())
    assert conditions == [
        "!(inputs.parameter_values['pipelinechannel--evaluate-passed'] == true)",
        "inputs.parameter_values['pipelinechannel--evaluate-passed'] == true",
    ]


def test_steps_run_in_the_pipeline_image_without_installing_anything(compiled):
    for name, executor in compiled["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"] == "registry.example.com/kubeflow-mnist/mnist-pipelines:0.1.0", name
        assert "pip install" not in " ".join(container["command"]), f"{name} would need a package index at run time"
        assert container["resources"] == {
            "cpuRequest": 0.1,
            "cpuLimit": 1.0,
            "memoryRequest": 0.268435456,
            "memoryLimit": 1.073741824,
            "resourceCpuRequest": "100m",
            "resourceCpuLimit": "1",
            "resourceMemoryRequest": "256Mi",
            "resourceMemoryLimit": "1Gi",
        }, name


def trainer_flag_defaults() -> dict[str, object]:
    """The defaults of `python -m mnist_ddp`'s flags, read from its source (this environment has no torch)."""
    tree = ast.parse((REPO / "trainer" / "mnist_ddp" / "main.py").read_text())
    defaults = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            keywords = {k.arg: k.value for k in node.keywords}
            if "default" in keywords and isinstance(keywords["default"], ast.Constant):
                defaults[node.args[0].value] = keywords["default"].value
    return defaults


def test_the_pipelines_defaults_are_the_trainers():
    defaults = trainer_flag_defaults()
    assert (defaults["--epochs"], defaults["--batch-size"]) == (pipeline.EPOCHS, pipeline.BATCH_SIZE)
