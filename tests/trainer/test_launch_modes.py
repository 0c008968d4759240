"""Real DDP: the trainer run as torchrun would, as a TrainJob's and a PyTorchJob's pods do, and alone (gloo, CPU)."""

import contextlib
import json
import os
import signal
import stat
import subprocess
import time

import pytest
import torch
from support.processes import free_port, venv_bin
from test_resume import process_tree
from trainer_runs import (
    TIMEOUT,
    debug_dumps,
    files_under,
    finish_all,
    python_module,
    run,
    torchrun,
    trainer_args,
    trainer_env,
)

from mnist_ddp import model_store
from mnist_ddp.checkpoint import load_checkpoint
from mnist_ddp.distributed import ddp_setup
from mnist_ddp.model import build_model

pytestmark = pytest.mark.slow

TRAIN_IMAGES = 320  # the mnist_dir fixture


def assert_published(out, world_size: int, backend: str) -> dict:
    """The model root holds exactly one complete version, named by LATEST; return its metadata."""
    root = out / "models"
    version = model_store.read_latest(root)
    assert sorted(p.name for p in root.iterdir()) == sorted([model_store.LATEST, version])
    metadata = json.loads((root / version / "metadata.json").read_text())
    assert metadata["sha256"] == model_store.sha256_file(root / version / "model.pt")
    state = torch.load(root / version / "model.pt", weights_only=True)
    build_model(metadata["architecture"]).load_state_dict(state)
    assert (metadata["world_size"], metadata["backend"], metadata["device_type"]) == (world_size, backend, "cpu")
    assert metadata["version"] == version
    assert metadata["class_names"] == [str(i) for i in range(10)]
    assert metadata["input"]["shape"] == [1, 28, 28] and metadata["input"]["value_range"] == [0.0, 1.0]
    assert metadata["metrics"]["eval_split"] == "test" and metadata["metrics"]["eval_images"] == 64
    assert 0 <= metadata["metrics"]["test_accuracy"] <= 1 and metadata["epochs"] == 3
    return metadata


def assert_loss_falls(out) -> None:
    history = load_checkpoint(out / "checkpoints")["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]


def assert_two_ranks_agree(out) -> None:
    """Identical models (parameters and buffers), disjoint shards of equal size that together cover all images."""
    dumps = debug_dumps(out)
    assert sorted(dumps) == [0, 1]
    assert dumps[0]["parameters_sha256"] == dumps[1]["parameters_sha256"]
    assert dumps[0]["state_sha256"] == dumps[1]["state_sha256"]
    assert sorted(dumps[0]["train_indices"]) == ["0", "1", "2"]
    for epoch in ("0", "1", "2"):
        shard0, shard1 = set(dumps[0]["train_indices"][epoch]), set(dumps[1]["train_indices"][epoch])
        assert len(shard0) == len(shard1) == TRAIN_IMAGES // 2
        assert not shard0 & shard1
        assert shard0 | shard1 == set(range(TRAIN_IMAGES))
    assert dumps[0]["train_indices"]["0"] != dumps[0]["train_indices"]["1"]


def test_torchrun_two_processes(tmp_path, mnist_dir):
    out = tmp_path
    argv = [*torchrun(2, free_port()), *trainer_args(mnist_dir, out, f"--tensorboard-dir={out / 'tb'}")]
    proc = run(argv, trainer_env())
    assert_published(out, world_size=2, backend="gloo")
    assert_loss_falls(out)
    assert_two_ranks_agree(out)
    assert all(d["threads"] == 1 for d in debug_dumps(out).values())
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    epoch_lines = [line for line in proc.stdout.splitlines() if " epoch 3/3: train loss" in line]
    assert len(epoch_lines) == 1 and "rank0" in epoch_lines[0], proc.stdout[-3000:]
    assert "images/s" in epoch_lines[0] and "epoch time" in epoch_lines[0]


def test_plain_processes_with_the_operators_variables(tmp_path, mnist_dir):
    """What a PyTorchJob Master and Worker pod run: `python -m mnist_ddp`, MASTER_ADDR/PORT, WORLD_SIZE, RANK.

    Rank 1 runs with umask 077 and rank 0 with 022: a file of mode 0600 in the outputs would
    have been written by rank 1.
    """
    out = tmp_path
    port = str(free_port())
    argv = trainer_args(mnist_dir, out, f"--tensorboard-dir={out / 'tb'}")
    procs = []
    for rank, umask in ((0, 0o022), (1, 0o077)):
        env = trainer_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank))
        procs.append(
            subprocess.Popen(
                [*python_module(umask), *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = finish_all(procs)
    assert_published(out, world_size=2, backend="gloo")
    assert_loss_falls(out)
    assert_two_ranks_agree(out)
    written = files_under(out / "models") + files_under(out / "checkpoints") + files_under(out / "tb")
    assert len(written) == 5, written
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044, f"{path} was written by rank 1"
    assert " epoch 3/3: " in outputs[0]
    assert "INFO" not in outputs[1], outputs[1][-3000:]


def test_single_process_without_launch_variables(tmp_path, mnist_dir):
    out = tmp_path
    proc = run([*python_module(), *trainer_args(mnist_dir, out)], trainer_env(OMP_NUM_THREADS="2"))
    assert_published(out, world_size=1, backend="none")
    assert_loss_falls(out)
    assert "backend none (single process)" in proc.stdout and "2 CPU threads" in proc.stdout
    assert debug_dumps(out)[0]["threads"] == 2


def test_too_few_steps_for_the_schedule_is_a_clear_error(tmp_path, mnist_dir):
    argv = [*python_module(), *trainer_args(mnist_dir, tmp_path, "--batch-size=512", "--epochs=1")]
    proc = subprocess.run(argv, env=trainer_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "give 1 step(s) per epoch" in proc.stdout and "use a smaller --batch-size" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "models").exists()


# --- Kubeflow Trainer v2: a TrainJob on the torch-distributed runtime -----------------------------
# The command of components/trainjob (tests/manifests/test_combinations.py checks the manifest's).
TRAINJOB_COMMAND = ("torchrun", "--module", "mnist_ddp")
TRAINJOB_NODES = 2


def trainjob_node(rank: int, master_port: int, argv: list[str], umask: int, log) -> subprocess.Popen:
    """One node of the TrainJob: its command and args, with the PET_* variables the torch plugin injects.

    The plugin sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (the Job completion index),
    PET_MASTER_ADDR (node 0's pod, here loopback) and PET_MASTER_PORT; nothing else launches anything.
    """
    env = trainer_env(
        PET_NNODES=str(TRAINJOB_NODES),
        PET_NPROC_PER_NODE="1",
        PET_NODE_RANK=str(rank),
        PET_MASTER_ADDR="127.0.0.1",
        PET_MASTER_PORT=str(master_port),
    )
    command = [venv_bin("trainer", TRAINJOB_COMMAND[0]), *TRAINJOB_COMMAND[1:], *argv]
    # The umask is set in a shell that then becomes torchrun: every file the node creates carries it.
    return subprocess.Popen(
        ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *command],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_trainjob(out, mnist_dir, *extra: str) -> list[str]:
    """Both nodes to completion (node 1 with umask 077, node 0 with 022); their outputs, node 0 first."""
    port = free_port()
    argv = trainer_args(mnist_dir, out, *extra)
    logs = [out.parent / f"{out.name}-node{rank}.log" for rank in range(TRAINJOB_NODES)]
    nodes = []
    for rank, umask in ((0, 0o022), (1, 0o077)):
        with open(logs[rank], "w") as log:
            nodes.append(trainjob_node(rank, port, argv, umask, log))
    for node, log in zip(nodes, logs, strict=True):
        node.wait(timeout=TIMEOUT)
        assert node.returncode == 0, log.read_text()[-4000:]
    return [log.read_text() for log in logs]


@pytest.fixture(scope="module")
def trainjob_run(tmp_path_factory, mnist_dir):
    """An uninterrupted run of the TrainJob's two nodes: its output directory and the nodes' logs."""
    out = tmp_path_factory.mktemp("trainjob") / "out"
    out.mkdir()
    return out, run_trainjob(out, mnist_dir, f"--tensorboard-dir={out / 'tb'}")


def test_trainjob_nodes_run_torchrun_with_the_plugins_pet_variables(trainjob_run):
    out, logs = trainjob_run
    assert_published(out, world_size=2, backend="gloo")
    assert_loss_falls(out)
    assert_two_ranks_agree(out)
    assert all(d["threads"] == 1 for d in debug_dumps(out).values())
    written = files_under(out / "models") + files_under(out / "checkpoints") + files_under(out / "tb")
    assert len(written) == 5, written
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044, f"{path} was written by node 1"
    assert "rank 0/2 (local rank 0), backend gloo" in logs[0] and " epoch 3/3: " in logs[0]
    assert "INFO" not in logs[1], logs[1][-3000:]


def test_a_restarted_trainjob_resumes_and_ends_like_an_uninterrupted_one(tmp_path, mnist_dir, trainjob_run):
    """Both nodes killed during epoch 3 (a JobSet restart recreates every node) and started again."""
    out = tmp_path / "out"
    out.mkdir()
    extra = ("--log-interval=1",)
    port = free_port()
    argv = trainer_args(mnist_dir, out, *extra)
    log_paths = [tmp_path / f"killed-node{rank}.log" for rank in range(TRAINJOB_NODES)]
    nodes = []
    for rank in range(TRAINJOB_NODES):
        with open(log_paths[rank], "w") as log:
            nodes.append(trainjob_node(rank, port, argv, 0o022, log))
    deadline = time.monotonic() + TIMEOUT
    try:
        while "epoch 3/3 step" not in log_paths[0].read_text():
            assert all(n.poll() is None for n in nodes), log_paths[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
    finally:
        for node in nodes:
            for pid in process_tree(node.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            node.wait()
    assert load_checkpoint(out / "checkpoints")["epochs_run"] == 2
    assert not (out / "models" / model_store.LATEST).exists()

    logs = run_trainjob(out, mnist_dir, *extra)
    assert "2 of 3 epochs done" in logs[0] and " epoch 3/3: " in logs[0] and " epoch 2/3: " not in logs[0]
    whole, _ = model_store.load_published(trainjob_run[0] / "models")
    resumed, _ = model_store.load_published(out / "models")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)


def test_a_trainjob_node_started_without_torchrun_refuses_to_train_alone(tmp_path, mnist_dir):
    env = trainer_env(PET_NNODES="2", PET_NPROC_PER_NODE="1", PET_NODE_RANK="1", PET_MASTER_PORT="29500")
    proc = subprocess.run(
        [*python_module(), *trainer_args(mnist_dir, tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PET_NNODES=2 is set" in proc.stdout and "command: [torchrun, --module, mnist_ddp]" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(("nodes", "refused"), [("2", True), ("1", False), ("", False)])
def test_only_a_multi_node_trainjob_without_torchrun_is_refused(monkeypatch, nodes, refused):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PET_NNODES", nodes)
    threads = torch.get_num_threads()
    try:
        if refused:
            with pytest.raises(ValueError, match="must start the trainer through torchrun"):
                ddp_setup("gloo")
        else:
            assert ddp_setup("gloo").world_size == 1
    finally:
        torch.set_num_threads(threads)
