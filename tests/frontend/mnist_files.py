"""Tiny MNIST IDX files written with the standard library, for the random digit tests."""

import gzip
import struct
from pathlib import Path


def write_idx_split(folder: Path, split: str, images: list[list[int]], labels: list[int], compress=True) -> Path:
    """Write `<split>-images-idx3-ubyte` and `<split>-labels-idx1-ubyte` (28x28 images) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    image_data = struct.pack(">IIII", 2051, len(images), 28, 28) + b"".join(bytes(image) for image in images)
    label_data = struct.pack(">II", 2049, len(labels)) + bytes(labels)
    for name, data in ((f"{split}-images-idx3-ubyte", image_data), (f"{split}-labels-idx1-ubyte", label_data)):
        (folder / (name + suffix)).write_bytes(gzip.compress(data) if compress else data)
    return folder
