"""The flags of `python -m local_cluster demo` (what `make demo` runs), with defaults from the environment."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from local_cluster.demo import REPO, Settings, run
from local_cluster.node.supervisor import Console


def parse_args(argv: list[str] | None = None) -> Settings:
    """Flags, with defaults from OVERLAY, MNIST_DIR, DEMO_DIR, CRDS_DIR, FRONTEND_PORT, MODEL_PORT,
    TENSORBOARD_PORT, DEMO_BIND_ADDRESS, RETRAIN."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m local_cluster demo", description=__doc__)
    parser.add_argument(
        "--overlay",
        type=Path,
        default=Path(env.get("OVERLAY") or REPO / "overlays" / "cpu"),
        help="kustomization to apply (default: $OVERLAY, else overlays/cpu of this repository)",
    )
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path(env["MNIST_DIR"]) if env.get("MNIST_DIR") else None,
        help="MNIST IDX files copied into the trainer's --data-dir on the claim's folder; "
        "unset, the trainer downloads MNIST (default: $MNIST_DIR, else unset)",
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=Path(env.get("DEMO_DIR") or REPO / ".demo"),
        help="working folder: kubeconfig, the cluster's state, the node's, and the claims' folders under pvc/ "
        "(default: $DEMO_DIR, else .demo of this repository)",
    )
    parser.add_argument(
        "--crds-dir",
        type=Path,
        default=Path(env.get("CRDS_DIR") or REPO.parent / "shared" / "crds"),
        help="the pinned upstream CRDs (default: $CRDS_DIR, else ../shared/crds)",
    )
    parser.add_argument(
        "--frontend-port",
        type=int,
        default=int(env.get("FRONTEND_PORT") or "8080"),
        help="local port of the frontend (default: $FRONTEND_PORT, else 8080)",
    )
    parser.add_argument(
        "--model-port",
        type=int,
        default=int(env.get("MODEL_PORT") or "9000"),
        help="local REST port of the model server (default: $MODEL_PORT, else 9000)",
    )
    parser.add_argument(
        "--tensorboard-port",
        type=int,
        default=int(env.get("TENSORBOARD_PORT") or "6006"),
        help="local port of TensorBoard (default: $TENSORBOARD_PORT, else 6006)",
    )
    parser.add_argument(
        "--bind-address",
        default=env.get("DEMO_BIND_ADDRESS") or "127.0.0.1",
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
        "--ready-timeout",
        type=float,
        default=300.0,
        help="seconds the serving workloads may take to become available (default: 300)",
    )
    parser.add_argument(
        "--backoff-seconds",
        type=float,
        default=float(env.get("DEMO_BACKOFF_SECONDS") or "10"),
        help="the node's first crash-loop back-off (default: $DEMO_BACKOFF_SECONDS, else 10, the kubelet's)",
    )
    args = parser.parse_args(argv)
    return Settings(
        overlay=args.overlay,
        demo_dir=args.demo_dir.resolve(),
        crds_dir=args.crds_dir.resolve(),
        mnist_dir=args.mnist_dir.resolve() if args.mnist_dir else None,
        frontend_port=args.frontend_port,
        model_port=args.model_port,
        tensorboard_port=args.tensorboard_port,
        retrain=args.retrain,
        exit_when_ready=args.exit_when_ready,
        ready_timeout=args.ready_timeout,
        bind_address=args.bind_address,
        backoff_seconds=args.backoff_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo with these flags."""
    return run(parse_args(argv), Console(name="demo"))
