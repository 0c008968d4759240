"""A global batch the ranks cannot share evenly is refused with the sizes that would work."""

from pathlib import Path

import pytest
import torch

from mnist_ddp.distributed import DistContext
from mnist_ddp.trainer import TrainConfig, Trainer


def config(batch_size: int) -> TrainConfig:
    return TrainConfig(
        epochs=1, batch_size=batch_size, lr=0.1, momentum=0.9, weight_decay=0.0, seed=1, augment=False,
        log_interval=0, checkpoint_dir=Path("unused"), model_root=Path("unused"),
    )  # fmt: skip


def context(world_size: int) -> DistContext:
    return DistContext(
        rank=0, local_rank=0, world_size=world_size, local_world_size=1, backend="gloo", device=torch.device("cpu")
    )


@pytest.mark.parametrize(
    ("batch_size", "world_size", "choices"),
    [(256, 3, "--batch-size=255 or --batch-size=258"), (2, 3, "--batch-size=3")],
)
def test_the_message_names_multiples_of_the_world_size(batch_size, world_size, choices):
    with pytest.raises(ValueError, match=f"must be divisible by the world size {world_size}") as raised:
        Trainer(torch.nn.Linear(1, 1), None, config(batch_size), context(world_size))
    assert f"choose a multiple of {world_size}, e.g. {choices}" in str(raised.value)
