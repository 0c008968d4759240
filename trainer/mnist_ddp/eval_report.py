"""What the evaluation split says beyond accuracy: a confusion matrix and a picture of the mistakes."""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mnist_ddp.model import IMAGE_SIZE, NUM_CLASSES

# The grid shows at most this many misclassified digits per epoch: enough to see a pattern, small
# enough that an event file stays a few kB per epoch.
MAX_MISCLASSIFIED = 32
GRID_COLUMNS = 8
TILE_SCALE = 2
CAPTION_HEIGHT = 12
TILE_GAP = 2


def confusion_counts(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """A NUM_CLASSES x NUM_CLASSES int64 matrix: row = true label, column = predicted label."""
    flat = labels.to(torch.int64) * NUM_CLASSES + predictions.to(torch.int64)
    return torch.bincount(flat.cpu(), minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def misclassified_grid(images: np.ndarray, labels: list[int], predictions: list[int]) -> np.ndarray:
    """An HWC uint8 RGB grid of digits, each captioned `predicted (true)` in red below it.

    `images` is uint8 (n, 28, 28), white digits on black as the model sees them. With no
    digit (a perfect epoch) the grid is one empty tile, so the image tag still has a value.
    """
    if not len(images) == len(labels) == len(predictions):
        raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(predictions)} predictions")
    count = len(images)
    columns = max(1, min(GRID_COLUMNS, count))
    rows = max(1, -(-count // columns))
    tile_w = IMAGE_SIZE * TILE_SCALE
    tile_h = tile_w + CAPTION_HEIGHT
    grid = Image.new("RGB", (columns * (tile_w + TILE_GAP), rows * (tile_h + TILE_GAP)), (40, 40, 40))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=10)
    for index, (image, label, predicted) in enumerate(zip(images, labels, predictions, strict=True)):
        x = (index % columns) * (tile_w + TILE_GAP)
        y = (index // columns) * (tile_h + TILE_GAP)
        digit = Image.fromarray(np.asarray(image, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
        grid.paste(digit.resize((tile_w, tile_w), Image.Resampling.NEAREST).convert("RGB"), (x, y))
        draw.text((x + 2, y + tile_w), f"{predicted} ({label})", fill=(255, 80, 80), font=font)
    return np.asarray(grid)


def misclassified_table(labels: list[int], predictions: list[int]) -> str:
    """The grid's digits as a Markdown table (TensorBoard's Text tab), in the grid's order."""
    if not labels:
        return "no misclassified digit"
    rows = [f"| {i} | {p} | {t} |" for i, (t, p) in enumerate(zip(labels, predictions, strict=True))]
    return "\n".join(["| # | predicted | true |", "| --- | --- | --- |", *rows])
