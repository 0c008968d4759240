"""One optimizer step of the real Trainer on a fixed batch of 64 images, as a DDP rank or alone.

    python one_training_step.py OUT_DIR [--backend gloo|nccl]

Launched with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (as the Training Operator
sets them) it is one rank of a DDP job; without them, a single process. Each process takes
the trainer's own path: ddp_setup, Trainer (DistributedDataParallel, DistributedSampler),
Trainer._run_epoch for one epoch of one step. It writes the parameters before and after that
step to OUT_DIR/rank<N>.pt. The model has no BatchNorm: with it each rank would normalise by
its own half of the batch, and two ranks could not match one process.
"""

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from mnist_ddp.data import MnistData
from mnist_ddp.distributed import ddp_setup, ddp_teardown
from mnist_ddp.trainer import MIN_SCHEDULE_STEPS, TrainConfig, Trainer

IMAGES = 64


def fixed_data() -> MnistData:
    """The same 64 random uint8 images and labels in every process."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    return MnistData(images, labels, images[:8], labels[:8], "test")


def model_without_batchnorm() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 13 * 13, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where rank<N>.pt is written")
    parser.add_argument("--backend", default="gloo", help="torch.distributed backend (default: gloo)")
    args = parser.parse_args()
    # Full float32 on a GPU too (cuDNN's default for convolutions is TF32), so that the comparison can be tight.
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    ctx = ddp_setup(args.backend)
    config = TrainConfig(
        # One step per epoch: the whole batch over all ranks. The schedule needs MIN_SCHEDULE_STEPS in all.
        epochs=MIN_SCHEDULE_STEPS,
        batch_size=IMAGES,
        # OneCycleLR starts at lr / 25: a first step of 0.1.
        lr=2.5,
        momentum=0.9,
        weight_decay=5e-4,
        seed=1,
        augment=False,
        log_interval=0,
        checkpoint_dir=args.out_dir / f"checkpoints-{os.getpid()}",
        model_root=args.out_dir / "models",
    )
    trainer = Trainer(model_without_batchnorm(), fixed_data(), config, ctx)
    before = {name: p.detach().cpu().clone() for name, p in trainer._module().named_parameters()}
    trainer._run_epoch(0)
    after = {name: p.detach().cpu().clone() for name, p in trainer._module().named_parameters()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"before": before, "after": after, "device": str(ctx.device)}, args.out_dir / f"rank{ctx.rank}.pt")
    ddp_teardown()


if __name__ == "__main__":
    main()
