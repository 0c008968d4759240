"""Warm start of `make demo`: seconds from the command to its READY line, binaries built and a model published.

    .venv/tools/bin/python scripts/bench_demo.py [--runs 5] [--baseline-ref 8bb5c70]

First one demo run trains and publishes a model (not counted). Then each counted run starts
the demo with `--exit-when-ready` on that DEMO_DIR and times it to READY. With
`--baseline-ref`, the demo of that commit (the operator emulator, `scripts/run_local.py`,
before the local control plane) runs in turn with it, A B A B, from a git worktree of that
commit, on its own DEMO_DIR, so the ratio is measured side by side on the same machine.
Prints each run, then the median, min and max of each, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from local_cluster.ports import free_ports  # noqa: E402

READY = "READY: open"


def time_to_ready(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> float:
    """Seconds until the command prints READY; the command is then left to stop by itself (--exit-when-ready)."""
    started = time.monotonic()
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if READY in line:
                elapsed = time.monotonic() - started
                p.stdout.read()
                p.wait(timeout=120)
                return elapsed
            if time.monotonic() - started > timeout:
                p.kill()
                break
        p.wait()
    raise RuntimeError(f"{' '.join(argv)} did not get READY:\n{''.join(lines[-30:])}")


def demo_argv(python: Path, entry: list[str], demo_dir: Path, mnist_dir: Path, with_tensorboard: bool) -> list[str]:
    frontend, model, tensorboard = free_ports(3)
    argv = [str(python), *entry, "--demo-dir", str(demo_dir), "--mnist-dir", str(mnist_dir), "--exit-when-ready"]
    argv += ["--frontend-port", str(frontend), "--model-port", str(model)]
    return argv + (["--tensorboard-port", str(tensorboard)] if with_tensorboard else [])


def main() -> int:
    """Parse the flags, prepare both demos, time the runs in turn, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each (default: 5)")
    parser.add_argument("--baseline-ref", help="a commit whose scripts/run_local.py runs in turn with today's demo")
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DIR") or REPO.parent / "shared" / "data" / "mnist-5k"),
        help="MNIST IDX files for the one training run (default: $MNIST_DIR, else ../shared/data/mnist-5k)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DEMO_DIR", "FRONTEND_PORT", "MODEL_PORT", "OVERLAY")}
    python = REPO / ".venv" / "tools" / "bin" / "python"
    commands = {"demo": demo_argv(python, ["-m", "local_cluster", "demo"], work / "demo", args.mnist_dir, True)}
    cwds = {"demo": REPO}
    baseline = work / "baseline"
    try:
        if args.baseline_ref:
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(baseline), args.baseline_ref], cwd=REPO, check=True
            )
            os.symlink(REPO / ".venv", baseline / ".venv")
            commands["baseline"] = demo_argv(
                python, [str(baseline / "scripts" / "run_local.py")], work / "baseline-demo", args.mnist_dir, False
            )
            cwds["baseline"] = baseline
        for name, argv in commands.items():
            print(f"{name}: first run (trains, not counted): {time_to_ready(argv, cwds[name], env):.1f} s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(args.runs):
            for name, argv in commands.items():
                times[name].append(time_to_ready(argv, cwds[name], env))
                print(f"{name}: run {run + 1}: {times[name][-1]:.1f} s to READY", flush=True)
        for name, values in times.items():
            print(
                f"{name}: median {statistics.median(values):.1f} s, min {min(values):.1f}, max {max(values):.1f} "
                f"({len(values)} runs)"
            )
        if "baseline" in times:
            ratio = statistics.median(times["demo"]) / statistics.median(times["baseline"])
            print(f"ratio demo/baseline of the medians: {ratio:.2f}")
    finally:
        if baseline.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
