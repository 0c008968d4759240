"""MNIST: fetched once onto the shared volume, read into memory, served to the ranks in batches.

`--data-dir` may hold the IDX files as distributed (`train-images-idx3-ubyte.gz`, ...,
gzipped or not) directly or in torchvision's layout `<dir>/MNIST/raw/`. The files are
read with torchvision's MNIST readers. Only when the training files are missing does
rank 0 download them (torchvision's mirrors, a log line per quarter of each file) into a
hidden temporary directory that is renamed into place when complete, so a crash never
leaves half-written data behind.
"""

import gzip
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import check_md5

from mnist_ddp.model import IMAGE_SIZE, NUM_CLASSES

log = logging.getLogger(__name__)

SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def idx_file(data_dir: str | os.PathLike, split: str, kind: str) -> Path | None:
    """Path of the `kind` ("images" or "labels") IDX file of `split`, gzipped or not, or None."""
    prefix = SPLIT_PREFIXES[split]
    name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for folder in (Path(data_dir), Path(data_dir) / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def has_split(data_dir: str | os.PathLike, split: str) -> bool:
    """True if both IDX files of `split` are in `data_dir`."""
    return all(idx_file(data_dir, split, kind) is not None for kind in ("images", "labels"))


def download_file(url: str, dest: Path, timeout_s: float = 60.0, progress_every: float = 0.25) -> None:
    """Download `url` to `dest`, logging its size and each `progress_every` fraction received.

    A line per step, not a progress bar: the pod's log (and the local demo's prefixed output)
    is line-based, so a bar redrawn with carriage returns would show nothing until the end.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "pytorch/vision"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        log.info("downloading %s (%s)", url, f"{total / 1e6:.1f} MB" if total else "size unknown")
        received, next_report = 0, progress_every
        while chunk := response.read(1 << 16):
            out.write(chunk)
            received += len(chunk)
            if total and received < total and received / total >= next_report:
                log.info(
                    "  %s: %.1f of %.1f MB (%d%%)", dest.name, received / 1e6, total / 1e6, 100 * received // total
                )
                next_report = (received / total // progress_every + 1) * progress_every
    if total and received != total:
        raise OSError(f"{url} ended after {received} of {total} bytes")


def download_with_progress(
    root: Path,
    mirrors: Sequence[str] = tuple(MNIST.mirrors),
    resources: Sequence[tuple[str, str]] = tuple(MNIST.resources),
) -> None:
    """Download the four MNIST files (11 MB gzipped) into `root`/MNIST/raw from torchvision's mirrors.

    Each file is tried on each mirror in turn and kept only if its md5 is torchvision's.
    """
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in resources:
        errors = []
        for mirror in mirrors:
            url = f"{mirror}{filename}"
            try:
                download_file(url, raw / filename)
            except (OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if check_md5(raw / filename, md5):
                break
            errors.append(f"{url}: the file's md5 is not {md5}")
        else:
            (raw / filename).unlink(missing_ok=True)
            raise OSError("; ".join(errors))
    log.info("downloaded MNIST into %s", raw)


def fetch_mnist(data_dir: str | os.PathLike, download: Callable[[Path], None] = download_with_progress) -> None:
    """Make sure the training files are in `data_dir`, downloading them once if they are not.

    Call on global rank 0 only; the other ranks wait at a barrier. The download goes into a
    hidden temporary directory next to its destination and is renamed into place complete.
    """
    data_dir = Path(data_dir)
    if has_split(data_dir, "train"):
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    log.info("MNIST not found in %s: downloading it once (pre-seed the files there to skip this)", data_dir)
    staging = Path(tempfile.mkdtemp(prefix=".mnist-download-", dir=data_dir))
    try:
        try:
            download(staging)
        except Exception as exc:
            raise RuntimeError(
                f"MNIST is not in {data_dir} and could not be downloaded ({exc}). On a cluster without internet "
                f"access, copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
                f"and t10k-labels-idx1-ubyte.gz into {data_dir}."
            ) from exc
        if not has_split(staging, "train"):
            raise RuntimeError(f"the download into {staging} did not produce the MNIST training files")
        try:
            os.rename(staging / "MNIST", data_dir / "MNIST")
        except OSError:
            # Another job sharing the volume may have renamed its copy into place first.
            if not has_split(data_dir, "train"):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_idx(path: Path, kind: str) -> torch.Tensor:
    """Read an IDX file (gzipped or not) with torchvision's MNIST reader."""
    reader = read_image_file if kind == "images" else read_label_file
    if path.suffix != ".gz":
        return reader(str(path))
    # torchvision's reader takes plain files only: decompress into a private temporary file,
    # so a read-only data directory works and the ranks never write to the shared volume.
    with tempfile.TemporaryDirectory(prefix="mnist-idx-") as tmp:
        plain = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return reader(str(plain))


def read_split(data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 (n, 28, 28), labels int64 (n,)) of `split` ("train" or "test")."""
    paths = {kind: idx_file(data_dir, split, kind) for kind in ("images", "labels")}
    missing = [kind for kind, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(f"no MNIST {split} {' and '.join(missing)} file in {data_dir} (or its MNIST/raw)")
    images = read_idx(paths["images"], "images")
    labels = read_idx(paths["labels"], "labels")
    if tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{paths['images']}: images are {tuple(images.shape[1:])}, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(f"{data_dir}: {len(images)} {split} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{paths['labels']}: labels outside 0..9")
    return images, labels


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, holdout), holding out `fraction` of every class (at least one image)."""
    if not 0 < fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, holdout = [], []
    for label in range(NUM_CLASSES):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        holdout.append(members[:count])
        train.append(members[count:])
    return torch.cat(train).sort().values, torch.cat(holdout).sort().values


@dataclass
class MnistData:
    """Training and evaluation images (uint8, n x 28 x 28) and labels in memory."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    eval_split: str  # "test" (the official t10k files) or "holdout" (stratified part of the training files)


def load_mnist(data_dir: str | os.PathLike, val_fraction: float, seed: int) -> MnistData:
    """Read MNIST from `data_dir`; without the t10k files, hold out a stratified `val_fraction` for evaluation."""
    images, labels = read_split(data_dir, "train")
    if has_split(data_dir, "test"):
        test_images, test_labels = read_split(data_dir, "test")
        return MnistData(images, labels, test_images, test_labels, "test")
    train_idx, holdout_idx = stratified_split(labels, val_fraction, seed)
    return MnistData(images[train_idx], labels[train_idx], images[holdout_idx], labels[holdout_idx], "holdout")


class InMemoryMnist(Dataset):
    """Images kept as one uint8 tensor; indexed with a list of indices it returns a whole batch.

    One tensor index per batch instead of a PIL image and a transform per digit keeps the
    input pipeline far below the cost of the model on a CPU.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index].unsqueeze(1), self.labels[index]


def train_loader(
    dataset: InMemoryMnist,
    batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DistributedSampler]:
    """Batches of this rank's shard; call `sampler.set_epoch(epoch)` before each epoch to reshuffle.

    drop_last=True on the sampler keeps the shards disjoint (no padding with repeated images).
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    loader = DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)
    return loader, sampler


def eval_loader(
    dataset: InMemoryMnist, batch_size: int, rank: int, world_size: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Batches of every `world_size`-th image from `rank` on: each image is evaluated exactly once."""
    batches = BatchSampler(range(rank, len(dataset), world_size), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1, the model's input range."""
    return images.float().div_(255.0)


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    max_degrees: float = 10.0,
    max_scale: float = 0.1,
    max_shift: float = 2.0,
) -> torch.Tensor:
    """Rotate, scale and shift every image of a float batch (n, 1, 28, 28) by its own random amount.

    The random numbers come from `generator` (on the CPU), so a run is reproducible; the warp
    itself runs on the batch's device.
    """
    n = images.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * limit

    angle = torch.deg2rad(uniform(max_degrees))
    scale = 1 + uniform(max_scale)
    shift = torch.stack([uniform(max_shift), uniform(max_shift)], dim=1) * 2 / images.shape[-1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    ).to(device=images.device, dtype=images.dtype)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
