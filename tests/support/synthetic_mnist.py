"""Write a tiny MNIST look-alike in the original IDX format, for tests that need data or a trained model.

Digits are rendered from a font with random size, position, rotation and stroke
width: white on black, 28x28 uint8, like MNIST. A few hundred of them train the
real model to a useful accuracy in seconds.

    python tests/support/synthetic_mnist.py OUT_DIR [--train N] [--test N] [--seed S] [--no-gzip]
"""

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049


def render_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (n,28,28), labels uint8 (n,)) with balanced classes."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        size = int(rng.integers(18, 25))
        font = ImageFont.load_default(size=size)
        canvas = Image.new("L", (56, 56), 0)
        stroke = int(rng.integers(0, 2))
        ImageDraw.Draw(canvas).text((28, 28), str(label), 255, font, "mm", stroke_width=stroke, stroke_fill=255)
        canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        dx, dy = rng.integers(-2, 3, size=2)
        images[i] = np.asarray(canvas.crop((14 + dx, 14 + dy, 42 + dx, 42 + dy)))
    return images, labels


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """Write `array` (uint8) as an IDX file (images: 3 dims, labels: 1 dim), gzipped if `compress`."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def write_synthetic_mnist(out_dir: Path, train: int = 600, test: int = 200, seed: int = 0, compress: bool = True):
    """Write train-* and (if test > 0) t10k-* IDX files into `out_dir`; return `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = [("train", train, seed)] + ([("t10k", test, seed + 1)] if test else [])
    for prefix, n, split_seed in splits:
        images, labels = render_digits(n, split_seed)
        write_idx(out_dir / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(out_dir / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the IDX files into")
    parser.add_argument("--train", type=int, default=600, help="training images (default: 600)")
    parser.add_argument("--test", type=int, default=200, help="test images, 0 for none (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-gzip", action="store_true", help="write plain IDX instead of .gz (default: gzip)")
    args = parser.parse_args()
    write_synthetic_mnist(args.out_dir, args.train, args.test, args.seed, not args.no_gzip)


if __name__ == "__main__":
    main()
