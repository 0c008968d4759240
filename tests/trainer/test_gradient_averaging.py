"""DDP averages the gradients of its ranks: two ranks take the step one process takes on their joint batch.

Two ranks that agree with each other can still both be wrong (the original tutorial averaged its
gradients twice); here the reference is one process stepping on the concatenated batch.
"""

import subprocess

import pytest
import torch
from gpus import gpu_env
from support.processes import REPO, free_port, venv_bin
from trainer_runs import TIMEOUT, finish_all, trainer_env

pytestmark = pytest.mark.slow

STEP_SCRIPT = str(REPO / "tests" / "trainer" / "one_training_step.py")


def step_alone(out, env: dict[str, str], *extra: str) -> dict:
    proc = subprocess.run(
        [venv_bin("trainer"), STEP_SCRIPT, str(out), *extra], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "rank0.pt", weights_only=True)


def step_on_two_ranks(out, envs: list[dict[str, str]], *extra: str) -> list[dict]:
    """Rank 0 and rank 1 as a PyTorchJob's Master and Worker run them: MASTER_ADDR/PORT, WORLD_SIZE, RANK."""
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [venv_bin("trainer"), STEP_SCRIPT, str(out), *extra],
            env={**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, env in enumerate(envs)
    ]
    finish_all(procs)
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def assert_same_step(ranks: list[dict], alone: dict) -> None:
    """Every rank starts where the lone process starts and moves its parameters as that process does."""
    for rank, result in enumerate(ranks):
        assert result["before"].keys() == alone["before"].keys()
        for name, start in alone["before"].items():
            assert torch.equal(result["before"][name], start), f"rank {rank} started from other {name}"
            expected = alone["after"][name] - start
            assert expected.abs().max() > 1e-4, f"the step hardly moved {name}: the comparison would prove nothing"
            torch.testing.assert_close(
                result["after"][name] - result["before"][name],
                expected,
                rtol=1e-4,
                atol=1e-7,
                msg=lambda text, name=name, rank=rank: f"rank {rank}, update of {name}: {text}",
            )


def test_two_gloo_ranks_take_the_step_of_one_process_on_the_whole_batch(tmp_path):
    env = trainer_env()
    alone = step_alone(tmp_path / "alone", env)
    ranks = step_on_two_ranks(tmp_path / "ddp", [env, env])
    assert [r["device"] for r in ranks] == ["cpu", "cpu"]
    assert_same_step(ranks, alone)


@pytest.mark.gpu
def test_two_nccl_ranks_on_two_gpus_take_the_step_of_one_process_on_the_whole_batch(tmp_path, two_gpus):
    env = trainer_env()
    alone = step_alone(tmp_path / "alone", gpu_env(env, two_gpus[:1]), "--backend=nccl")
    # One GPU per rank, as the GPU overlay's pods get theirs: each sees it as cuda:0.
    ranks = step_on_two_ranks(tmp_path / "ddp", [gpu_env(env, [device]) for device in two_gpus], "--backend=nccl")
    assert [r["device"] for r in [alone, *ranks]] == ["cuda:0"] * 3
    assert_same_step(ranks, alone)
