"""The training loop: DDP over the ranks, a snapshot per epoch, resume, publishing the model."""

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import OneCycleLR

from mnist_ddp import model_store
from mnist_ddp.checkpoint import checkpoint_path, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mnist_ddp.data import InMemoryMnist, MnistData, eval_loader, random_affine, to_float, train_loader
from mnist_ddp.distributed import DistContext, all_gather_objects, all_reduce_sum, barrier
from mnist_ddp.eval_report import MAX_MISCLASSIFIED, confusion_counts, misclassified_grid, misclassified_table
from mnist_ddp.model import ARCHITECTURE, IMAGE_SIZE, MNIST_MEAN, MNIST_STD, NUM_CLASSES

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 1000
# OneCycleLR's warm-up phase (a quarter of the steps) must span at least one step.
MIN_SCHEDULE_STEPS = 8
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """What the command line decides about a run."""

    epochs: int
    batch_size: int  # global: split evenly over the ranks
    lr: float
    momentum: float
    weight_decay: float
    seed: int
    augment: bool
    log_interval: int
    checkpoint_dir: Path
    model_root: Path
    tensorboard_dir: Path | None = None
    debug_dump: Path | None = None
    # False publishes a candidate version and leaves LATEST (what serving loads) where it is.
    promote: bool = True
    # Where rank 0 writes the published version's name, for a caller such as a pipeline step.
    version_file: Path | None = None

    def resume_key(self, world_size: int) -> dict:
        """The settings a resumed run must share with the run that wrote the snapshot."""
        keys = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "seed", "augment")
        return {"architecture": ARCHITECTURE, "world_size": world_size, **{k: getattr(self, k) for k in keys}}


@dataclass
class Evaluation:
    """One pass over the evaluation split, summed over all ranks."""

    loss: float
    accuracy: float
    # confusion[true][predicted], counts.
    confusion: list[list[int]]
    # Up to MAX_MISCLASSIFIED (image uint8 28x28, true label, predicted label): rank 0's first.
    misclassified: list[tuple[np.ndarray, int, int]]


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of a state_dict's names and values: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Trains `model` on this rank's shard of `data`, following the pytorch/examples DDP tutorial.

    The snapshot is loaded before the model is wrapped in DDP and saved from the unwrapped
    module by global rank 0, which alone logs progress and writes to the shared volume.
    """

    def __init__(self, model: nn.Module, data: MnistData, config: TrainConfig, ctx: DistContext, num_workers: int = 0):
        if config.batch_size % ctx.world_size:
            lower = config.batch_size // ctx.world_size * ctx.world_size
            choices = " or ".join(f"--batch-size={size}" for size in (lower, lower + ctx.world_size) if size)
            raise ValueError(
                f"--batch-size {config.batch_size} must be divisible by the world size {ctx.world_size} (the Master "
                f"and the Workers): choose a multiple of {ctx.world_size}, e.g. {choices}"
            )
        self.config = config
        self.ctx = ctx
        self.model = model.to(ctx.device)
        pin_memory = ctx.device.type == "cuda"
        self.train_images = len(data.train_labels)
        self.train_data, self.sampler = train_loader(
            InMemoryMnist(data.train_images, data.train_labels),
            config.batch_size // ctx.world_size,
            ctx.rank,
            ctx.world_size,
            config.seed,
            num_workers,
            pin_memory,
        )
        if len(self.train_data) == 0:
            raise ValueError(f"{self.train_images} training images are too few for {ctx.world_size} rank(s)")
        self.eval_images = len(data.eval_labels)
        self.eval_split = data.eval_split
        self.eval_data = eval_loader(
            InMemoryMnist(data.eval_images, data.eval_labels),
            EVAL_BATCH_SIZE,
            ctx.rank,
            ctx.world_size,
            num_workers,
            pin_memory,
        )
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        total_steps = config.epochs * len(self.train_data)
        if total_steps < MIN_SCHEDULE_STEPS:
            per_rank_batch = config.batch_size // ctx.world_size
            raise ValueError(
                f"{self.train_images} training images give {len(self.train_data)} step(s) per epoch at a per-rank "
                f"batch of {per_rank_batch} (--batch-size {config.batch_size} over {ctx.world_size} rank(s)), "
                f"{total_steps} in {config.epochs} epoch(s): the one-cycle schedule needs at least "
                f"{MIN_SCHEDULE_STEPS}; use a smaller --batch-size or more --epochs"
            )
        self.scheduler = OneCycleLR(self.optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.25)
        self.epochs_run = 0
        self.history: list[dict] = []
        self.published_version: str | None = None
        self.seen_indices: dict[int, list[int]] = {}
        snapshot = load_checkpoint(config.checkpoint_dir)
        if snapshot is not None:
            self._load_snapshot(snapshot)
        loaded = all_gather_objects(self.epochs_run, ctx)
        if len(set(loaded)) != 1:
            raise RuntimeError(f"ranks loaded snapshots of different epochs {loaded} from {config.checkpoint_dir}")
        if ctx.distributed:
            device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
            # No buffer broadcast before every forward: training-mode BatchNorm uses batch statistics, so the
            # running statistics matter only for evaluation; `_sync_buffers` copies rank 0's once per epoch.
            self.model = DistributedDataParallel(
                self.model, device_ids=device_ids, broadcast_buffers=False, gradient_as_bucket_view=True
            )

    def _module(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def _load_snapshot(self, snapshot: dict) -> None:
        expected = self.config.resume_key(self.ctx.world_size)
        if snapshot.get("format") != CHECKPOINT_FORMAT or snapshot.get("resume_key") != expected:
            raise ValueError(
                f"{checkpoint_path(self.config.checkpoint_dir)} was written by a run with other settings "
                f"({snapshot.get('resume_key')}) than this one ({expected}). To train from scratch, delete "
                f"{self.config.checkpoint_dir} or pass another --checkpoint-dir."
            )
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.scheduler.load_state_dict(snapshot["scheduler"])
        set_rng_state(snapshot["rng"][self.ctx.rank])
        self.epochs_run = snapshot["epochs_run"]
        self.history = snapshot["history"]
        self.published_version = snapshot["published_version"]
        if self.ctx.is_main:
            log.info(
                "resuming from %s: %d of %d epochs done",
                checkpoint_path(self.config.checkpoint_dir),
                self.epochs_run,
                self.config.epochs,
            )

    def _save_snapshot(self) -> None:
        # Every rank's generator state is kept, so a resumed rank continues its own sequence.
        rng = all_gather_objects(rng_state(), self.ctx)
        if not self.ctx.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "resume_key": self.config.resume_key(self.ctx.world_size),
            "epochs_run": self.epochs_run,
            "model": self._module().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "history": self.history,
            "published_version": self.published_version,
        }
        save_checkpoint(self.config.checkpoint_dir, state)

    def _run_batch(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = to_float(images.to(self.ctx.device, non_blocking=True))
        labels = labels.to(self.ctx.device, non_blocking=True)
        if self.config.augment:
            images = random_affine(images, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def _run_epoch(self, epoch: int) -> tuple[float, int, float]:
        """Train one epoch; return (mean loss over all ranks, images over all ranks, seconds)."""
        self.sampler.set_epoch(epoch)
        if self.config.debug_dump is not None:
            self.seen_indices[epoch] = list(self.sampler)
        # Augmentation draws from its own generator, seeded per (seed, epoch, rank): a resumed
        # epoch sees exactly the random numbers an uninterrupted one would.
        generator = torch.Generator().manual_seed((self.config.seed * 100_000 + epoch) * 1_000 + self.ctx.rank)
        self.model.train()
        steps = len(self.train_data)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        seen = 0
        start = time.perf_counter()
        for step, (images, labels) in enumerate(self.train_data, start=1):
            loss = self._run_batch(images, labels, generator)
            loss_sum += loss * len(labels)
            seen += len(labels)
            if self.ctx.is_main and self.config.log_interval > 0 and step % self.config.log_interval == 0:
                elapsed = time.perf_counter() - start
                log.info(
                    "epoch %d/%d step %d/%d: loss %.4f, lr %.4g, %.0f images/s",
                    epoch + 1,
                    self.config.epochs,
                    step,
                    steps,
                    loss.item(),
                    self.scheduler.get_last_lr()[0],
                    seen * self.ctx.world_size / elapsed,
                )
        self._sync_buffers()
        total_loss, total_seen = all_reduce_sum([loss_sum.item(), seen], self.ctx)
        return total_loss / total_seen, int(total_seen), time.perf_counter() - start

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm running statistics: all ranks then hold the published model."""
        if self.ctx.distributed:
            for buffer in self._module().buffers():
                dist.broadcast(buffer, src=0)

    @torch.inference_mode()
    def _evaluate(self) -> Evaluation:
        """Loss, accuracy, confusion matrix and misclassified digits of the evaluation split, each image once."""
        # The bare module: DDP's forward would start collectives, and ranks hold different batch counts here.
        model = self._module()
        model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
        wrong: list[tuple[np.ndarray, int, int]] = []
        for raw, labels in self.eval_data:
            images = to_float(raw.to(self.ctx.device, non_blocking=True))
            labels = labels.to(self.ctx.device, non_blocking=True)
            logits = model(images)
            predictions = logits.argmax(1)
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (predictions == labels).sum().item()
            count += len(labels)
            confusion += confusion_counts(labels, predictions)
            if len(wrong) < MAX_MISCLASSIFIED:
                for i in (predictions != labels).nonzero().flatten().tolist()[: MAX_MISCLASSIFIED - len(wrong)]:
                    wrong.append((raw[i].cpu().numpy(), int(labels[i]), int(predictions[i])))
        totals = all_reduce_sum([loss_sum, correct, count, *confusion.flatten().tolist()], self.ctx)
        loss_sum, correct, count = totals[:3]
        matrix = [
            [int(v) for v in totals[3 + row * NUM_CLASSES : 3 + (row + 1) * NUM_CLASSES]] for row in range(NUM_CLASSES)
        ]
        # Rank 0's mistakes first, then rank 1's, ...: the grid is a sample, not a ranking.
        gathered = [item for rank_wrong in all_gather_objects(wrong, self.ctx) for item in rank_wrong]
        return Evaluation(loss_sum / count, correct / count, matrix, gathered[:MAX_MISCLASSIFIED])

    def _open_tensorboard(self):
        if self.config.tensorboard_dir is None or not self.ctx.is_main:
            return None
        # Imported here: optional and slow to import.
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed attempt logged after its last snapshot.
        return SummaryWriter(log_dir=str(self.config.tensorboard_dir), purge_step=self.epochs_run)

    def _write_epoch_summaries(self, writer, step: int, evaluation: Evaluation) -> None:
        record = self.history[-1]
        split = self.eval_split
        writer.add_scalar("loss/train", record["train_loss"], step)
        writer.add_scalar(f"loss/{split}", evaluation.loss, step)
        writer.add_scalar(f"accuracy/{split}", evaluation.accuracy, step)
        writer.add_scalar("throughput/images_per_second", record["images_per_second"], step)
        # The one-cycle schedule's rate at the end of the epoch (the next epoch starts from it).
        writer.add_scalar("optimizer/learning_rate", record["learning_rate"], step)
        images = [image for image, _, _ in evaluation.misclassified]
        labels = [label for _, label, _ in evaluation.misclassified]
        predicted = [prediction for _, _, prediction in evaluation.misclassified]
        writer.add_image(
            f"misclassified/{split}", misclassified_grid(np.array(images), labels, predicted), step, dataformats="HWC"
        )
        writer.add_text(f"misclassified/{split}", misclassified_table(labels, predicted), step)
        writer.flush()

    def train(self) -> str | None:
        """Run the remaining epochs, then publish; return the published version (rank 0; None elsewhere)."""
        cfg = self.config
        if self.epochs_run >= cfg.epochs and self.published_version:
            if self.ctx.is_main:
                log.info(
                    "nothing to do: %s records a finished run of %d epochs, published as %s under %s. "
                    "To train again, delete %s.",
                    checkpoint_path(cfg.checkpoint_dir),
                    cfg.epochs,
                    self.published_version,
                    cfg.model_root,
                    cfg.checkpoint_dir,
                )
            self._write_version_file()
            return self.published_version if self.ctx.is_main else None
        writer = self._open_tensorboard()
        for epoch in range(self.epochs_run, cfg.epochs):
            start = time.perf_counter()
            train_loss, images, train_seconds = self._run_epoch(epoch)
            evaluation = self._evaluate()
            eval_loss, eval_accuracy = evaluation.loss, evaluation.accuracy
            self.epochs_run = epoch + 1
            self.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "eval_loss": eval_loss,
                    "eval_accuracy": eval_accuracy,
                    "images_per_second": images / train_seconds,
                    "learning_rate": self.scheduler.get_last_lr()[0],
                    "confusion_matrix": evaluation.confusion,
                }
            )
            self._save_snapshot()
            if self.ctx.is_main:
                log.info(
                    "epoch %d/%d: train loss %.4f, %s loss %.4f, %s accuracy %.2f%% (%d images), "
                    "%.0f images/s, epoch time %.1f s",
                    epoch + 1,
                    cfg.epochs,
                    train_loss,
                    self.eval_split,
                    eval_loss,
                    self.eval_split,
                    100 * eval_accuracy,
                    self.eval_images,
                    images / train_seconds,
                    time.perf_counter() - start,
                )
            if writer is not None:
                self._write_epoch_summaries(writer, epoch + 1, evaluation)
        if writer is not None:
            writer.close()
        version = self._publish()
        self._write_debug_dump()
        return version

    def _publish(self) -> str | None:
        """Rank 0 publishes the model version and records it in the snapshot."""
        if self.ctx.is_main:
            last = self.history[-1]
            metadata = {
                "architecture": ARCHITECTURE,
                "input": {
                    "shape": [1, IMAGE_SIZE, IMAGE_SIZE],
                    "dtype": "float32",
                    "layout": "NCHW",
                    "color": "grayscale, white digit on black",
                    "value_range": [0.0, 1.0],
                    "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD, "applied_in_model": True},
                },
                "class_names": [str(i) for i in range(NUM_CLASSES)],
                "metrics": {
                    "test_accuracy": last["eval_accuracy"],
                    "test_loss": last["eval_loss"],
                    "eval_split": self.eval_split,
                    "eval_images": self.eval_images,
                    # Rows are true labels, columns predicted labels, both in class_names order.
                    "confusion_matrix": last.get("confusion_matrix"),
                },
                "epochs": self.config.epochs,
                "world_size": self.ctx.world_size,
                "backend": self.ctx.backend if self.ctx.distributed else "none",
                "device_type": self.ctx.device.type,
                "training": {
                    "train_images": self.train_images,
                    "batch_size": self.config.batch_size,
                    "lr": self.config.lr,
                    "seed": self.config.seed,
                    "augment": self.config.augment,
                },
            }
            state = {name: tensor.detach().cpu() for name, tensor in self._module().state_dict().items()}
            self.published_version = model_store.publish_model(
                self.config.model_root, state, metadata, promote=self.config.promote
            )
            log.info(
                "published %s/%s (%s accuracy %.2f%%); %s",
                self.config.model_root,
                self.published_version,
                self.eval_split,
                100 * last["eval_accuracy"],
                "LATEST names it" if self.config.promote else "a candidate: LATEST is unchanged (--no-promote)",
            )
        self._save_snapshot()
        self._write_version_file()
        barrier(self.ctx)
        return self.published_version if self.ctx.is_main else None

    def _write_version_file(self) -> None:
        """With --version-file, rank 0 writes the published version's name there, atomically."""
        if self.config.version_file is None or not self.ctx.is_main:
            return
        path = self.config.version_file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(f"{self.published_version}\n")
        partial.replace(path)

    def _write_debug_dump(self) -> None:
        """With --debug-dump, each rank writes what it trained on and a digest of its final model."""
        if self.config.debug_dump is None:
            return
        self.config.debug_dump.mkdir(parents=True, exist_ok=True)
        module = self._module()
        dump = {
            "rank": self.ctx.rank,
            "world_size": self.ctx.world_size,
            "backend": self.ctx.backend if self.ctx.distributed else "none",
            "threads": torch.get_num_threads(),
            "train_indices": {str(epoch): indices for epoch, indices in self.seen_indices.items()},
            "parameters_sha256": state_sha256(dict(module.named_parameters())),
            "state_sha256": state_sha256(module.state_dict()),
            "config": {k: str(v) for k, v in asdict(self.config).items()},
        }
        (self.config.debug_dump / f"rank{self.ctx.rank}.json").write_text(json.dumps(dump))
