"""Training benchmark on the 5k MNIST sample: one process x 2 threads against DDP 2 processes x 1 thread.

Both configurations run the real trainer (`python -m mnist_ddp`) on the same data, model and global
batch, alternately, several times; the table shows the median training throughput of each and
their ratio. Then one DDP run with the default settings measures the wall time from launch to the
first epoch at or above the target held-out accuracy, and to the published model.

    MNIST_DIR=../shared/data/mnist-5k .venv/trainer/bin/python scripts/bench_train.py
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+): .* holdout accuracy ([\d.]+)% .* ([\d.]+) images/s")
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_env(threads: int) -> dict[str, str]:
    """The trainer's environment with `threads` intra-op threads per process and no launch variables."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(PYTHONPATH=str(REPO / "trainer"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    return env


def command(processes: int) -> list[str]:
    """argv prefix: a single `python -m mnist_ddp`, or torchrun with `processes` local ranks."""
    if processes == 1:
        return [str(BIN / "python"), "-m", "mnist_ddp"]
    return [
        str(BIN / "torchrun"),
        "--nnodes=1",
        f"--nproc-per-node={processes}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "mnist_ddp",
    ]


def train(
    processes: int, threads: int, data_dir: Path, flags: list[str]
) -> tuple[list[tuple[float, float, float]], float]:
    """Run the trainer; return ([(seconds since launch, accuracy %, images/s) per epoch], total seconds)."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        argv = [
            *command(processes),
            f"--data-dir={data_dir}",
            f"--model-root={out}/models",
            f"--checkpoint-dir={out}/checkpoints",
            "--log-interval=0",
            *flags,
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=trainer_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        epochs, lines = [], []
        for line in proc.stdout:
            lines.append(line)
            match = EPOCH_LINE.search(line)
            if match:
                epochs.append((time.perf_counter() - start, float(match[3]), float(match[4])))
        if proc.wait() != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{''.join(lines[-30:])}")
        return epochs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DIR", REPO.parent / "shared/data/mnist-5k")),
        help="the 5k sample (default: $MNIST_DIR, else ../shared/data/mnist-5k)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default: 3)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per throughput run (default: 8)")
    parser.add_argument("--target", type=float, default=98.5, help="held-out accuracy target in %% (default: 98.5)")
    args = parser.parse_args()
    if not (args.data_dir / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"no MNIST sample in {args.data_dir}: set MNIST_DIR")

    load_before = os.getloadavg()[0]
    configurations = {"1 process x 2 threads": (1, 2), "DDP 2 processes x 1 thread": (2, 1)}
    throughput = {name: [] for name in configurations}
    # Same data, model and global batch; only the launch differs. Epoch 1 is warm-up and left out.
    flags = [f"--epochs={args.epochs}"]
    print(f"throughput: {args.repeats} alternating runs of each, {args.epochs} epochs, median of epochs 2..")
    for repeat in range(args.repeats):
        for name, (processes, threads) in configurations.items():
            epochs, _ = train(processes, threads, args.data_dir, flags)
            rates = [rate for _, _, rate in epochs[1:]]
            throughput[name].extend(rates)
            print(f"  run {repeat + 1} {name:<28} {' '.join(f'{r:7.0f}' for r in rates)} images/s", flush=True)
    single, ddp = (statistics.median(throughput[name]) for name in configurations)
    # On a shared machine the least disturbed epoch is the closest to the hardware's figure.
    best_single, best_ddp = (max(throughput[name]) for name in configurations)

    epochs, total = train(2, 1, args.data_dir, [])
    reached = next(((t, acc) for t, acc, _ in epochs if acc >= args.target), None)
    final = epochs[-1][1]

    print()
    load_after = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.1f} at start, {load_after:.1f} at end")
    print("| measurement | value |")
    print("| --- | --- |")
    print(f"| 1 process x 2 threads (median) | {single:.0f} images/s |")
    print(f"| DDP 2 processes x 1 thread (median) | {ddp:.0f} images/s |")
    print(f"| DDP / single ratio of medians (target >= 0.95) | {ddp / single:.2f} |")
    print(f"| 1 process x 2 threads (best epoch) | {best_single:.0f} images/s |")
    print(f"| DDP 2 processes x 1 thread (best epoch) | {best_ddp:.0f} images/s |")
    print(f"| DDP / single ratio of best epochs | {best_ddp / best_single:.2f} |")
    if reached:
        print(
            f"| DDP 2x1, defaults: wall time to >= {args.target}% held-out | {reached[0]:.1f} s ({reached[1]:.2f}%) |"
        )
    else:
        print(f"| DDP 2x1, defaults: wall time to >= {args.target}% held-out | not reached |")
    print(f"| DDP 2x1, defaults: wall time to the published model | {total:.1f} s ({len(epochs)} epochs) |")
    print(f"| DDP 2x1, defaults: final held-out accuracy | {final:.2f}% |")


if __name__ == "__main__":
    main()
