"""The GPU variants: the trainer on CUDA with nccl, and the GPU overlay's trainer command and env run for real.

They run only where CUDA GPUs are (marker `gpu`; the `host_gpus` and `two_gpus` fixtures skip with the
reason elsewhere). On a GPU machine, after `make venvs`:

    make test-trainer PYTEST_ARGS="-q -m gpu"

Every other trainer test hides the GPUs (conftest.py), so it means CPU on any machine.
"""

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
from gpus import gpu_env
from support.processes import REPO, free_port, venv_bin
from trainer_runs import TIMEOUT, debug_dumps, finish_all, python_module, run, torchrun, trainer_args, trainer_env

from mnist_ddp import model_store

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

PVC = "/mnt/pvc"
GPU_RESOURCE = "nvidia.com/gpu"


def published_metadata(model_root: Path) -> dict:
    """The metadata of the version LATEST names, after verifying it as the model server does."""
    _, metadata = model_store.load_published(model_root)
    assert metadata["version"] == model_store.read_latest(model_root)
    return metadata


def test_a_single_process_trains_on_the_gpu(tmp_path, mnist_dir, host_gpus):
    proc = run([*python_module(), *trainer_args(mnist_dir, tmp_path)], gpu_env(trainer_env(), host_gpus[:1]))
    assert "backend none (single process), device cuda:0" in proc.stdout
    metadata = published_metadata(tmp_path / "models")
    assert (metadata["world_size"], metadata["backend"], metadata["device_type"]) == (1, "none", "cuda")


def torchrun_nccl(out: Path, mnist_dir: Path, devices: list[str]) -> dict:
    """torchrun with one process per GPU of `devices` (LOCAL_RANK picks each one's), backend auto."""
    argv = [*torchrun(len(devices), free_port()), *trainer_args(mnist_dir, out)]
    proc = run(argv, gpu_env(trainer_env(), devices))
    assert f"rank 0/{len(devices)} (local rank 0), backend nccl, device cuda:0" in proc.stdout
    return published_metadata(out / "models")


def test_torchrun_nccl_with_one_rank(tmp_path, mnist_dir, host_gpus):
    metadata = torchrun_nccl(tmp_path, mnist_dir, host_gpus[:1])
    assert (metadata["world_size"], metadata["backend"], metadata["device_type"]) == (1, "nccl", "cuda")


def test_torchrun_nccl_with_two_ranks_on_two_gpus(tmp_path, mnist_dir, two_gpus):
    metadata = torchrun_nccl(tmp_path, mnist_dir, two_gpus)
    assert (metadata["world_size"], metadata["backend"], metadata["device_type"]) == (2, "nccl", "cuda")
    dumps = debug_dumps(tmp_path)
    assert sorted(dumps) == [0, 1]
    assert dumps[0]["state_sha256"] == dumps[1]["state_sha256"], "the ranks hold different models"
    for epoch in dumps[0]["train_indices"]:
        assert not set(dumps[0]["train_indices"][epoch]) & set(dumps[1]["train_indices"][epoch])


def rendered_gpu_job() -> dict:
    """The PyTorchJob of overlays/gpu as `kubectl kustomize` renders it (with the tools environment)."""
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
        "from manifests.rendering import one, render; "
        "print(json.dumps(one(render(Path('overlays/gpu')), 'PyTorchJob', 'mnist-ddp')))"
    )
    proc = subprocess.run(
        [venv_bin("tools"), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(proc.stdout)


def resolved_env(container: dict) -> dict[str, str]:
    """The container's env as the kubelet resolves it; fails on a kind of entry this test does not know."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        field = entry.get("valueFrom", {}).get("resourceFieldRef")
        assert field and field["resource"] in ("limits.cpu", "requests.cpu"), f"cannot resolve env {entry}"
        kind, _, resource = field["resource"].partition(".")
        quantity = container["resources"][kind][resource]
        cores = int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
        # The kubelet rounds a resourceFieldRef up to a whole multiple of the divisor.
        env[entry["name"]] = str(math.ceil(cores / float(field.get("divisor", "1"))))
    return env


def test_the_gpu_overlays_trainer_command_and_env_run_for_real(tmp_path, mnist_dir, host_gpus):
    """Each replica as its pod runs it: the rendered command, args and env, one GPU, the operator's variables.

    /mnt/pvc becomes a folder here, holding the MNIST files. The job has one replica per GPU, as many
    as its manifest asks for (Master and Workers) and the machine has GPUs: with one GPU, the Master alone.
    """
    job = rendered_gpu_job()
    specs = job["spec"]["pytorchReplicaSpecs"]
    replicas = [("Master", 0)] + [("Worker", i) for i in range(int(specs.get("Worker", {}).get("replicas", 0)))]
    replicas = replicas[: len(host_gpus)]
    pvc = tmp_path / "pvc"
    shutil.copytree(mnist_dir, pvc / "data" / "mnist")
    port = str(free_port())
    procs = []
    for rank, ((rtype, _), device) in enumerate(zip(replicas, host_gpus, strict=False)):
        [container] = [c for c in specs[rtype]["template"]["spec"]["containers"] if c["name"] == "pytorch"]
        assert container["resources"]["limits"][GPU_RESOURCE] == 1
        assert container["command"][0] == "python"
        argv = [venv_bin("trainer"), *container["command"][1:], *container.get("args", [])]
        argv = [arg.replace(PVC, str(pvc)) for arg in argv]
        assert "--backend=nccl" in argv
        # What the Training Operator injects; MASTER_PORT is a free port rather than the container port.
        operator = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(len(replicas))}
        env = gpu_env({**trainer_env(), **resolved_env(container), **operator, "RANK": str(rank)}, [device])
        procs.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        )
    outputs = finish_all(procs, timeout=4 * TIMEOUT)
    assert "backend nccl, device cuda:0, 1 CPU threads (OMP_NUM_THREADS)" in outputs[0]
    metadata = published_metadata(pvc / "models" / "mnist")
    assert (metadata["world_size"], metadata["backend"], metadata["device_type"]) == (len(replicas), "nccl", "cuda")
    assert metadata["epochs"] == 15, "the overlay trains with the trainer's default epochs"
    assert list((pvc / "tensorboard" / "mnist-ddp").glob("events.out.tfevents.*"))
