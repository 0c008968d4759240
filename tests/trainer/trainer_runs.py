"""Starting real trainer processes in the three launch modes, and reading what they leave behind."""

import json
import subprocess
from pathlib import Path

from support.processes import component_env, venv_bin

# Variables of the launch modes: cleared so each test decides the mode, not the shell it runs in.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = 120


def trainer_env(**overrides: str) -> dict[str, str]:
    """Environment of a trainer process: PYTHONPATH as in the image, no launch variables, one thread, no GPU.

    gpus.gpu_env() gives a GPU variant's processes the machine's GPUs back.
    """
    env = component_env("trainer")
    for name in LAUNCH_VARIABLES:
        env.pop(name, None)
    env["OMP_NUM_THREADS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(overrides)
    return env


def trainer_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    """Flags for a small, fast run writing everything under `out`."""
    return [
        f"--data-dir={data_dir}",
        f"--model-root={out / 'models'}",
        f"--checkpoint-dir={out / 'checkpoints'}",
        f"--debug-dump={out / 'debug'}",
        "--epochs=3",
        "--batch-size=32",
        "--lr=0.05",
        "--log-interval=4",
        *extra,
    ]


def python_module(umask: int = 0o022) -> list[str]:
    """argv prefix running `python -m mnist_ddp` with the given umask (the mode of every file it creates)."""
    code = (
        "import os, runpy, sys; "
        f"os.umask({umask:#o}); "
        "sys.argv[0] = 'mnist_ddp'; "
        "runpy.run_module('mnist_ddp', run_name='__main__', alter_sys=True)"
    )
    return [venv_bin("trainer", "python"), "-c", code]


def torchrun(nproc: int, master_port: int) -> list[str]:
    """argv prefix running `torchrun ... -m mnist_ddp` with `nproc` local processes."""
    return [
        venv_bin("trainer", "torchrun"),
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={master_port}",
        "-m",
        "mnist_ddp",
    ]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run to completion, output captured; fail with the output if it does not exit 0."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def finish_all(procs: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[str]:
    """Wait for every process and return their outputs; fail with the output of any that did not exit 0.

    A process still running when waiting fails (a timeout) is killed, so no rank outlives the test.
    """
    try:
        outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-4000:]
    return outputs


def debug_dumps(out: Path) -> dict[int, dict]:
    """The --debug-dump files, by rank."""
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in sorted((out / "debug").glob("rank*.json"))}


def files_under(root: Path) -> list[Path]:
    """Every regular file below `root`."""
    return sorted(p for p in root.rglob("*") if p.is_file())
