"""A DDP run killed after epoch k continues at k+1 and ends where an uninterrupted run ends."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from support.processes import free_port
from trainer_runs import TIMEOUT, python_module, run, torchrun, trainer_args, trainer_env

from mnist_ddp import model_store
from mnist_ddp.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

EPOCHS = 4


def published_state(out) -> dict:
    state, _ = model_store.load_published(out / "models")
    return state


def metrics(out) -> list[dict]:
    """Loss and accuracy of every epoch, from the snapshot (throughput left out: it is timing)."""
    history = load_checkpoint(out / "checkpoints")["history"]
    return [{k: v for k, v in epoch.items() if k != "images_per_second"} for epoch in history]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (torchrun starts each worker in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def kill_during_epoch(argv, env, epoch: int, log_path) -> None:
    """Start a run and SIGKILL all its processes (as a pod's end does) once it logs progress inside `epoch`."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    try:
        while f"epoch {epoch}/{EPOCHS} step" not in log_path.read_text():
            assert proc.poll() is None, f"exited {proc.returncode} early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
    finally:
        for pid in process_tree(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, mnist_dir):
    env = trainer_env()
    extra = (f"--epochs={EPOCHS}", "--log-interval=1")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run([*torchrun(2, free_port()), *trainer_args(mnist_dir, whole, *extra)], env)

    def argv():
        return [*torchrun(2, free_port()), *trainer_args(mnist_dir, resumed, *extra)]

    kill_during_epoch(argv(), env, epoch=3, log_path=tmp_path / "killed.log")
    assert load_checkpoint(resumed / "checkpoints")["epochs_run"] == 2
    assert not (resumed / "models" / model_store.LATEST).exists()

    proc = run(argv(), env)
    assert f"2 of {EPOCHS} epochs done" in proc.stdout
    assert " epoch 2/4: " not in proc.stdout and " epoch 3/4: " in proc.stdout
    expected, actual = published_state(whole), published_state(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert metrics(resumed) == metrics(whole)

    version = model_store.read_latest(resumed / "models")
    again = run(argv(), env)
    assert "nothing to do" in again.stdout and version in again.stdout
    assert model_store.read_latest(resumed / "models") == version
    assert len(list((resumed / "models").iterdir())) == 2

    # The same checkpoint directory with other settings: refused, not silently mixed.

    changed = subprocess.run(
        [*python_module(), *trainer_args(mnist_dir, whole, f"--epochs={EPOCHS + 1}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert changed.returncode == 1
    assert "written by a run with other settings" in changed.stdout and "delete" in changed.stdout
