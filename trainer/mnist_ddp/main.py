"""Command line: `python -m mnist_ddp [flags]`, under torchrun, in a PyTorchJob pod or alone."""

import argparse
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from mnist_ddp.data import fetch_mnist, load_mnist
from mnist_ddp.distributed import BACKENDS, all_gather_objects, ddp_setup, ddp_teardown
from mnist_ddp.model import build_model
from mnist_ddp.trainer import TrainConfig, Trainer

log = logging.getLogger("mnist_ddp")

PVC = Path("/mnt/pvc")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The trainer's flags; defaults are what the PyTorchJob runs."""
    p = argparse.ArgumentParser(
        prog="python -m mnist_ddp",
        description="Train an MNIST classifier with DistributedDataParallel and publish it to the model root.",
    )
    p.add_argument(
        "--backend",
        type=str,
        choices=BACKENDS,
        default="auto",
        help="torch.distributed backend; auto is nccl when CUDA is available, else gloo (default: auto)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=PVC / "data/mnist",
        help="MNIST IDX files (gzipped or not, or torchvision's MNIST/raw layout); downloaded there once if "
        "missing (default: /mnt/pvc/data/mnist)",
    )
    p.add_argument(
        "--model-root",
        type=Path,
        default=PVC / "models/mnist",
        help="where model versions and LATEST are published (default: /mnt/pvc/models/mnist)",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=PVC / "checkpoints/mnist-ddp",
        help="this job's snapshot, resumed on restart; delete it to train from scratch "
        "(default: /mnt/pvc/checkpoints/mnist-ddp)",
    )
    p.add_argument(
        "--tensorboard-dir",
        type=Path,
        default=None,
        help="write TensorBoard event files there (default: none)",
    )
    p.add_argument("--epochs", type=positive_int, default=15, help="training epochs (default: 15)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        # Large enough that each rank's fixed per-step work (optimizer, dispatch) is amortised.
        default=256,
        help="global batch size, split evenly over the ranks (default: 256)",
    )
    p.add_argument("--lr", type=float, default=0.2, help="peak learning rate of the one-cycle schedule (default: 0.2)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD Nesterov momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 0.0005)")
    p.add_argument("--seed", type=int, default=1, help="random seed; the same seed repeats a run (default: 1)")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader worker processes; batches are sliced from memory, so 0 is fastest (default: 0)",
    )
    p.add_argument(
        "--log-interval",
        type=int,
        default=100,
        help="log progress every N steps inside an epoch, 0 for epoch lines only (default: 100)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="stratified share of the training files held out for evaluation when the t10k files are "
        "absent (default: 0.1)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random rotation, scaling and shifts of the training digits (default: on)",
    )
    p.add_argument(
        "--promote",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="point LATEST at the published version, so that serving loads it; --no-promote publishes a "
        "candidate and leaves LATEST alone (default: promote)",
    )
    p.add_argument(
        "--version-file",
        type=Path,
        default=None,
        help="write the published version's name to this file (default: none)",
    )
    p.add_argument(
        "--debug-dump",
        type=Path,
        default=None,
        help="each rank writes rank<N>.json there: the indices it trained on and a digest of its final model "
        "(default: none)",
    )
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python: with the same seed every rank builds the same initial model."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def main(argv: list[str] | None = None) -> None:
    """Set up the process group, fetch data once, train, publish, leave the process group."""
    args = parse_args(argv)
    # Global rank 0 logs; the others report warnings and errors only.
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(asctime)s rank{rank} %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    try:
        ctx = ddp_setup(args.backend)
        fetch_error = None
        if ctx.is_main:
            try:
                fetch_mnist(args.data_dir)
            except (OSError, RuntimeError) as exc:
                fetch_error = str(exc)
        # Doubles as the barrier the other ranks wait at while rank 0 downloads.
        fetch_error = all_gather_objects(fetch_error, ctx)[0]
        if fetch_error:
            raise RuntimeError(fetch_error)
        data = load_mnist(args.data_dir, args.val_fraction, args.seed)
        log.info(
            "data: %d training images, %d %s images from %s",
            len(data.train_labels),
            len(data.eval_labels),
            data.eval_split,
            args.data_dir,
        )
        seed_everything(args.seed)
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            seed=args.seed,
            augment=args.augment,
            log_interval=args.log_interval,
            checkpoint_dir=args.checkpoint_dir,
            model_root=args.model_root,
            tensorboard_dir=args.tensorboard_dir,
            debug_dump=args.debug_dump,
            promote=args.promote,
            version_file=args.version_file,
        )
        trainer = Trainer(build_model(), data, config, ctx, args.num_workers)
        trainer.train()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        log.error("%s", exc)
        raise SystemExit(1) from exc
    ddp_teardown()
