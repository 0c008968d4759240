"""Run the stack locally from the rendered manifests: `kubectl kustomize <overlay>`, then each workload's own
container command, arguments and environment as local processes (what `make demo` runs).

    .venv/tools/bin/python scripts/run_local.py [--overlay overlays/cpu] [--exit-when-ready]

Settings come from flags or the environment variables named in each flag's help.
See docs/local-demo.md for what is emulated and what is refused.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_runner.components import REPO
from local_runner.demo import Settings, build_plan, describe, remove_scratch, run
from local_runner.errors import RefusedError
from local_runner.render import Rendering, render_overlay
from local_runner.supervisor import Console


def parse_args(argv: list[str] | None = None) -> tuple[bool, Settings]:
    """Flags, with defaults from the environment variables MNIST_DIR, DEMO_DIR, FRONTEND_PORT, MODEL_PORT,
    DEMO_BIND_ADDRESS, RETRAIN."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--overlay",
        type=Path,
        default=REPO / "overlays" / "cpu",
        help="kustomization to render (default: overlays/cpu of this repository)",
    )
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path(env["MNIST_DIR"]) if env.get("MNIST_DIR") else None,
        help="MNIST IDX files copied into the trainer's --data-dir on the local volume; "
        "unset, the trainer downloads MNIST (default: $MNIST_DIR, else unset)",
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=Path(env.get("DEMO_DIR", REPO / ".demo")),
        help="working folder: the local volumes live under <demo-dir>/pvc (default: $DEMO_DIR, else .demo of this "
        "repository)",
    )
    parser.add_argument(
        "--frontend-port",
        type=int,
        default=int(env.get("FRONTEND_PORT", "8080")),
        help="local port of the frontend (default: $FRONTEND_PORT, else 8080)",
    )
    parser.add_argument(
        "--model-port",
        type=int,
        default=int(env.get("MODEL_PORT", "9000")),
        help="local REST port of the model server (default: $MODEL_PORT, else 9000)",
    )
    parser.add_argument(
        "--bind-address",
        default=env.get("DEMO_BIND_ADDRESS", "127.0.0.1"),
        help="address every server of the run listens on: 127.0.0.1 (this machine only) or 0.0.0.0 (every "
        "interface: anyone on the network can reach them) (default: $DEMO_BIND_ADDRESS, else 127.0.0.1)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        default=env.get("RETRAIN", "") not in ("", "0"),
        help="train again (clearing the checkpoints) even when a model is published (default: $RETRAIN=1, else off)",
    )
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        default=False,
        help="stop everything after one prediction has gone through the frontend (for tests and CI; default: off)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=False,
        help="print each process's command, working directory and environment, then exit (default: off)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds each server may take to pass its readiness probe (default: 120)",
    )
    args = parser.parse_args(argv)
    return args.dry_run, Settings(
        overlay=args.overlay,
        demo_dir=args.demo_dir.resolve(),
        mnist_dir=args.mnist_dir.resolve() if args.mnist_dir else None,
        frontend_port=args.frontend_port,
        model_port=args.model_port,
        retrain=args.retrain,
        exit_when_ready=args.exit_when_ready,
        ready_timeout=args.ready_timeout,
        bind_address=args.bind_address,
    )


def main(argv: list[str] | None = None) -> int:
    """Render, plan, run; 2 when the manifests ask for something the runner refuses."""
    dry_run, settings = parse_args(argv)
    console = Console()
    console.say(f"rendering {settings.overlay} with kubectl kustomize")
    try:
        plan = build_plan(Rendering.from_yaml(render_overlay(settings.overlay)), settings)
    except RefusedError as refusal:
        console.say(f"REFUSED {refusal}")
        return 2
    if dry_run:
        describe(plan, console)
        remove_scratch(plan)
        return 0
    return run(plan, settings, console)


if __name__ == "__main__":
    sys.exit(main())
