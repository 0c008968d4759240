"""Real MNIST digits for the "random digit" button, read from IDX files with the standard library only.

The data directory holds the files as distributed (`t10k-images-idx3-ubyte.gz`, ...,
gzipped or not), directly or in torchvision's `MNIST/raw/` layout. The test split is
used when present, else the training split (the 5,000-digit sample has only that).
"""

import gzip
import random
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SPLITS = ("t10k", "train")


class DigitDataError(ValueError):
    """The IDX files exist but cannot be read as MNIST images and labels."""


@dataclass(frozen=True)
class Digit:
    """One image: `pixels` holds `rows * cols` bytes, white digit on black, row-major."""

    pixels: bytes
    rows: int
    cols: int
    label: int
    index: int
    split: str


@dataclass(frozen=True)
class DigitSet:
    """All images and labels of one split, kept as the raw bytes of the IDX files."""

    split: str
    images: bytes
    labels: bytes
    rows: int
    cols: int

    def __len__(self) -> int:
        return len(self.labels)

    def digit(self, index: int) -> Digit:
        """The digit at `index`."""
        size = self.rows * self.cols
        pixels = self.images[index * size : (index + 1) * size]
        return Digit(pixels, self.rows, self.cols, self.labels[index], index, self.split)


def find_split(data_dir: str | Path) -> tuple[str, Path, Path] | None:
    """Return (split, images file, labels file) for the first split found in `data_dir`, or None."""
    root = Path(data_dir)
    for folder in (root, root / "MNIST" / "raw"):
        for split in SPLITS:
            images = _existing(folder / f"{split}-images-idx3-ubyte")
            labels = _existing(folder / f"{split}-labels-idx1-ubyte")
            if images and labels:
                return split, images, labels
    return None


def read_idx(path: Path, magic: int, ndim: int) -> tuple[tuple[int, ...], bytes]:
    """Return (dimensions, data) of an IDX file of unsigned bytes; raise DigitDataError if it is not one."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DigitDataError(f"cannot read {path}: {exc}") from None
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size or struct.unpack(">I", raw[:4])[0] != magic:
        raise DigitDataError(f"{path} is not an IDX file with magic number {magic}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    data = raw[header_size:]
    expected = 1
    for d in dims:
        expected *= d
    if len(data) != expected:
        raise DigitDataError(f"{path}: header says {dims} ({expected} bytes), file holds {len(data)} bytes")
    return dims, data


def load_split(split: str, images_path: Path, labels_path: Path) -> DigitSet:
    """Read one split's images and labels and check that they belong together."""
    (count, rows, cols), images = read_idx(images_path, IMAGES_MAGIC, 3)
    (label_count,), labels = read_idx(labels_path, LABELS_MAGIC, 1)
    if count != label_count or count == 0:
        raise DigitDataError(f"{images_path} holds {count} images but {labels_path} holds {label_count} labels")
    if max(labels) > 9:
        raise DigitDataError(f"{labels_path} holds labels outside 0-9")
    return DigitSet(split, images, labels, rows, cols)


class DigitStore:
    """The digits under a data directory, found on demand and read once, shared by the threads of a worker.

    Files are looked up on each `split()` until found, so a volume filled after the app started
    is picked up without a restart.
    """

    def __init__(self, data_dir: str | Path | None, seed: int | None = None):
        self.data_dir = data_dir
        self._digits: DigitSet | None = None
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def split(self) -> str | None:
        """The split that `random_digit` draws from ("t10k" or "train"), or None when there is no data."""
        if self._digits is not None:
            return self._digits.split
        if self.data_dir is None:
            return None
        found = find_split(self.data_dir)
        return found[0] if found else None

    def random_digit(self) -> Digit | None:
        """A digit picked at random, or None when there is no data; DigitDataError when the files are bad."""
        digits = self._load()
        if digits is None:
            return None
        with self._lock:
            index = self._random.randrange(len(digits))
        return digits.digit(index)

    def _load(self) -> DigitSet | None:
        with self._lock:
            if self._digits is None and self.data_dir is not None:
                found = find_split(self.data_dir)
                if found is not None:
                    self._digits = load_split(*found)
            return self._digits


def _existing(stem: Path) -> Path | None:
    for candidate in (stem.with_name(stem.name + ".gz"), stem):
        if candidate.is_file():
            return candidate
    return None
