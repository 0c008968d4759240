"""Models and images for the serving tests: published versions, a quickly trained model, drawn digits."""

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from support.synthetic_mnist import render_digits

from mnist_ddp import model_store
from mnist_ddp.model import ARCHITECTURE, build_model


def random_state_dict(seed: int) -> dict:
    """Weights of an untrained model: enough where only the plumbing is under test."""
    torch.manual_seed(seed)
    return build_model().state_dict()


def publish(model_root: Path, state_dict: dict) -> str:
    """Publish `state_dict` as the trainer does and return the version name."""
    return model_store.publish_model(model_root, state_dict, {"architecture": ARCHITECTURE})


def publish_corrupt(model_root: Path, state_dict: dict) -> str:
    """Publish a version whose model.pt no longer matches the sha256 in metadata.json."""
    version = publish(model_root, state_dict)
    path = model_root / version / model_store.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["sha256"] = "0" * 64
    path.write_text(json.dumps(metadata))
    return version


def train_small_model(n_train: int = 1000, epochs: int = 5, seed: int = 0) -> tuple[dict, float]:
    """Train the real model on synthetic digits for a few seconds; return (state_dict, hold-out accuracy)."""
    # One thread: on a busy 2-core machine, two threads per process make this several times slower.
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    images, labels = render_digits(n_train, seed)
    test_images, test_labels = render_digits(300, seed + 1)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels).long()
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_images).float().div(255).unsqueeze(1)).argmax(1).numpy()
    return model.state_dict(), float((predicted == test_labels).mean())


def draw_digit(
    digit: int,
    canvas: tuple[int, int] = (400, 300),
    centre: tuple[int, int] = (300, 80),
    size: int = 60,
    ink: tuple = (0, 0, 0, 255),
    background: tuple = (255, 255, 255, 255),
    mode: str = "RGBA",
) -> Image.Image:
    """Draw `digit` with the font the synthetic training digits use, at `centre` (x, y), `size` pixels tall."""
    image = Image.new("RGBA", canvas, background)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(image).text(centre, str(digit), ink, font, "mm", stroke_width=max(1, size // 25), stroke_fill=ink)
    return image if mode == "RGBA" else image.convert(mode)


def encode(image: Image.Image, image_format: str = "PNG") -> bytes:
    """Encode a PIL image as PNG or JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def ink_box(field: np.ndarray, threshold: float = 0.2) -> tuple[int, int]:
    """(height, width) of the bounding box of the pixels above `threshold`."""
    rows = np.flatnonzero((field > threshold).any(axis=1))
    cols = np.flatnonzero((field > threshold).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def centre_of_mass(field: np.ndarray) -> tuple[float, float]:
    """(y, x) centre of mass, with pixel i centred at i + 0.5."""
    mass = field.sum()
    y = (field.sum(axis=1) * (np.arange(field.shape[0]) + 0.5)).sum() / mass
    x = (field.sum(axis=0) * (np.arange(field.shape[1]) + 0.5)).sum() / mass
    return float(y), float(x)
