"""components/tensorboard's container, run as its manifest says with the image's TensorBoard (.venv/tensorboard),
over event files that the real trainer wrote where the PyTorchJob tells it to: probes answer, the tags are there."""

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from manifests.rendering import OVERLAYS, REPO, containers, one, pod_templates
from manifests.test_pipeline_components import render_with
from support.processes import Server, component_env, free_port, venv_bin, wait_for_http

pytestmark = pytest.mark.slow

PVC_MOUNT = "/mnt/pvc"
EPOCHS = 2
TIMEOUT = 180


def on_the_volume(path: str, pvc: Path) -> str:
    """A path under the manifests' /mnt/pvc, moved to the local stand-in for the volume."""
    assert path.startswith(PVC_MOUNT + "/"), path
    return str(pvc / path.removeprefix(PVC_MOUNT + "/"))


def flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    cpu = next(o for o in OVERLAYS if o.name == "cpu")
    return render_with(tmp_path_factory.mktemp("render"), cpu, ["tensorboard"])


@pytest.fixture(scope="module")
def pvc(rendered, tmp_path_factory) -> Path:
    """A stand-in for the volume after one short training run with the PyTorchJob's --tensorboard-dir."""
    pvc = tmp_path_factory.mktemp("pvc")
    data = tmp_path_factory.mktemp("mnist")
    python = venv_bin("trainer", "python")
    synthetic = [python, str(REPO / "tests" / "support" / "synthetic_mnist.py"), str(data), "--train=320", "--test=64"]
    subprocess.run(synthetic, check=True, capture_output=True, timeout=TIMEOUT)
    master = one(rendered, "PyTorchJob", "mnist-ddp")["spec"]["pytorchReplicaSpecs"]["Master"]
    args = master["template"]["spec"]["containers"][0]["args"]
    trainer = Server(
        [
            python,
            "-m",
            "mnist_ddp",
            f"--data-dir={data}",
            f"--model-root={on_the_volume(flag(args, 'model-root'), pvc)}",
            f"--checkpoint-dir={on_the_volume(flag(args, 'checkpoint-dir'), pvc)}",
            f"--tensorboard-dir={on_the_volume(flag(args, 'tensorboard-dir'), pvc)}",
            f"--epochs={EPOCHS}",
            "--batch-size=64",
            "--lr=0.05",
        ],
        env=component_env("trainer", OMP_NUM_THREADS="1"),
    )
    with trainer:
        assert trainer.proc.wait(TIMEOUT) == 0, trainer.output()[-3000:]
    return pvc


@pytest.fixture(scope="module")
def tensorboard(rendered, pvc):
    """TensorBoard started with the Deployment's args, on loopback and a free port; yields (base URL, container)."""
    (template,) = [t for t in pod_templates(rendered) if t.where == "Deployment/mnist-tensorboard"]
    (container,) = containers(template)
    port = free_port()
    args = []
    for arg in container["args"]:
        if arg.startswith("--logdir="):
            arg = f"--logdir={on_the_volume(arg.split('=', 1)[1], pvc)}"
        elif arg == "--bind_all":
            arg = "--host=127.0.0.1"
        elif arg.startswith("--port="):
            arg = f"--port={port}"
        args.append(arg)
    server = Server([venv_bin("tensorboard", "tensorboard"), *args], env=component_env("tools"))
    with server:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url + container["readinessProbe"]["httpGet"]["path"], timeout=60, proc=server.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{server.output()[-3000:]}") from exc
        yield url, container


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.load(resp)


def test_both_probes_answer(tensorboard):
    url, container = tensorboard
    for probe in ("readinessProbe", "livenessProbe"):
        assert get_json(url + container[probe]["httpGet"]["path"])["version"] == "2.20.0"


def test_the_trainers_scalars_and_images_are_served(tensorboard):
    url, _ = tensorboard
    scalars = get_json(f"{url}/data/plugin/scalars/tags")
    assert list(scalars) == ["mnist-ddp"], "one run: the PyTorchJob's --tensorboard-dir"
    expected = {"loss/train", "loss/test", "accuracy/test", "throughput/images_per_second", "optimizer/learning_rate"}
    assert expected <= set(scalars["mnist-ddp"])
    rates = get_json(f"{url}/data/plugin/scalars/scalars?run=mnist-ddp&tag=optimizer/learning_rate")
    assert [step for _, step, _ in rates] == list(range(1, EPOCHS + 1))
    images = get_json(f"{url}/data/plugin/images/tags")
    assert "misclassified/test" in images["mnist-ddp"]
