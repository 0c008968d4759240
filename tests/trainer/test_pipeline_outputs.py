"""What a pipeline reads from a training run: a candidate version (--no-promote), its confusion matrix, and
TensorBoard event files read back with TensorBoard's own reader."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.lr_scheduler import OneCycleLR
from trainer_runs import python_module, run, trainer_args, trainer_env

from mnist_ddp import model_store
from mnist_ddp.eval_report import (
    CAPTION_HEIGHT,
    GRID_COLUMNS,
    MAX_MISCLASSIFIED,
    TILE_GAP,
    TILE_SCALE,
    confusion_counts,
    misclassified_grid,
    misclassified_table,
)
from mnist_ddp.model import build_model

# Few, large steps: the model is still making mistakes after two epochs, so the grid has digits in it.
EPOCHS, BATCH, LR = 2, 64, 0.05
STEPS_PER_EPOCH = 320 // BATCH  # the mnist_dir fixture's 320 training digits, one rank
EVAL_IMAGES = 64


@pytest.fixture(scope="module")
def candidate_run(mnist_dir, tmp_path_factory):
    """One training run with --no-promote, --version-file and --tensorboard-dir, into a root whose LATEST exists."""
    out = tmp_path_factory.mktemp("candidate")
    served = model_store.publish_model(out / "models", build_model().state_dict(), {"architecture": "served"})
    args = trainer_args(mnist_dir, out, f"--epochs={EPOCHS}", f"--batch-size={BATCH}", f"--lr={LR}")
    args += ["--no-promote", f"--version-file={out / 'run' / 'version'}", f"--tensorboard-dir={out / 'tb'}"]
    proc = run([*python_module(), *args], trainer_env())
    return out, served, proc


@pytest.mark.slow
def test_no_promote_publishes_a_candidate_and_leaves_latest(candidate_run):
    out, served, proc = candidate_run
    root = out / "models"
    candidate = (out / "run" / "version").read_text().strip()
    assert candidate != served
    assert model_store.read_latest(root) == served
    state, metadata = model_store.load_published(root, candidate)
    assert metadata["version"] == candidate
    build_model(metadata["architecture"]).load_state_dict(state)
    assert "LATEST is unchanged (--no-promote)" in proc.stdout
    assert not [p.name for p in (out / "run").iterdir() if p.name != "version"], "no partial version file is left"


@pytest.mark.slow
def test_metadata_records_the_eval_confusion_matrix(candidate_run):
    out, _, _ = candidate_run
    candidate = (out / "run" / "version").read_text().strip()
    metrics = model_store.read_metadata(out / "models", candidate)["metrics"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.min() >= 0
    assert matrix.sum() == metrics["eval_images"] == EVAL_IMAGES
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test_accuracy"])


def _events(tb_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _expected_learning_rates() -> list[float]:
    """OneCycleLR with the trainer's settings, read at the end of each epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR, momentum=0.9, nesterov=True)
    scheduler = OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * STEPS_PER_EPOCH, pct_start=0.25)
    rates = []
    for _ in range(EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            optimizer.step()
            scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


@pytest.mark.slow
def test_tensorboard_has_learning_rate_and_throughput_each_epoch(candidate_run):
    out, _, _ = candidate_run
    events = _events(out / "tb")
    tags = events.Tags()
    assert {"optimizer/learning_rate", "throughput/images_per_second", "loss/train", "accuracy/test"} <= set(
        tags["scalars"]
    )
    rates = events.Scalars("optimizer/learning_rate")
    assert [e.step for e in rates] == list(range(1, EPOCHS + 1))
    assert [e.value for e in rates] == pytest.approx(_expected_learning_rates(), rel=1e-5)
    throughput = events.Scalars("throughput/images_per_second")
    assert [e.step for e in throughput] == list(range(1, EPOCHS + 1))
    assert all(e.value > 0 for e in throughput)


@pytest.mark.slow
def test_tensorboard_shows_the_misclassified_digits_with_their_predictions(candidate_run):
    out, _, _ = candidate_run
    candidate = (out / "run" / "version").read_text().strip()
    matrix = np.array(model_store.read_metadata(out / "models", candidate)["metrics"]["confusion_matrix"])
    wrong = int(matrix.sum() - np.trace(matrix))
    assert wrong > 0, "the run is too good to test the grid: make it shorter"
    shown = min(wrong, MAX_MISCLASSIFIED)
    events = _events(out / "tb")
    assert "misclassified/test" in events.Tags()["images"]
    images = events.Images("misclassified/test")
    assert [e.step for e in images] == list(range(1, EPOCHS + 1))
    last = Image.open(io.BytesIO(images[-1].encoded_image_string))
    columns = min(GRID_COLUMNS, shown)
    rows = -(-shown // columns)
    tile = 28 * TILE_SCALE
    assert last.size == (columns * (tile + TILE_GAP), rows * (tile + CAPTION_HEIGHT + TILE_GAP))
    # The Text tab lists the grid's digits: every (true, predicted) pair is a mistake the matrix counted.
    texts = events.Tensors("misclassified/test/text_summary")
    assert [e.step for e in texts] == list(range(1, EPOCHS + 1))
    table = texts[-1].tensor_proto.string_val[0].decode()
    pairs = [tuple(int(c) for c in line.strip("| ").split(" | ")[1:]) for line in table.splitlines()[2:]]
    assert len(pairs) == shown
    for predicted, true in pairs:
        assert predicted != true and matrix[true][predicted] > 0


def test_confusion_counts_rows_are_true_labels():
    labels = torch.tensor([3, 3, 7, 1])
    predictions = torch.tensor([3, 8, 7, 7])
    matrix = confusion_counts(labels, predictions)
    assert matrix.shape == (10, 10) and matrix.sum() == 4
    assert (matrix[3, 3], matrix[3, 8], matrix[7, 7], matrix[1, 7]) == (1, 1, 1, 1)


def test_the_grid_captions_each_digit_in_red_below_it():
    digits = np.zeros((3, 28, 28), dtype=np.uint8)
    digits[1, 10:18, 10:18] = 255
    grid = misclassified_grid(digits, [1, 2, 3], [7, 5, 8])
    tile = 28 * TILE_SCALE
    assert grid.shape == (tile + CAPTION_HEIGHT + TILE_GAP, 3 * (tile + TILE_GAP), 3)
    second = grid[:tile, tile + TILE_GAP : 2 * tile + TILE_GAP]
    assert (second == 255).all(axis=2).sum() == (8 * TILE_SCALE) ** 2, "the digit is drawn in white, scaled"
    for index in range(3):
        caption = grid[tile : tile + CAPTION_HEIGHT, index * (tile + TILE_GAP) : (index + 1) * (tile + TILE_GAP)]
        red = (caption[..., 0] > 200) & (caption[..., 1] < 120)
        assert red.any(), f"digit {index} has no caption"


def test_a_perfect_epoch_still_gives_an_image():
    grid = misclassified_grid(np.zeros((0, 28, 28), dtype=np.uint8), [], [])
    assert grid.shape[2] == 3 and grid.size > 0
    assert misclassified_table([], []) == "no misclassified digit"


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 images, 1 labels"):
        misclassified_grid(np.zeros((2, 28, 28), dtype=np.uint8), [1], [2])


def test_publishing_without_promotion_leaves_latest(tmp_path):
    first = model_store.publish_model(tmp_path, build_model().state_dict(), {"architecture": "a"})
    second = model_store.publish_model(tmp_path, build_model().state_dict(), {"architecture": "b"}, promote=False)
    assert model_store.read_latest(tmp_path) == first
    model_store.set_latest(tmp_path, second)
    assert model_store.read_latest(tmp_path) == second
    assert json.loads((tmp_path / second / "metadata.json").read_text())["architecture"] == "b"


@pytest.mark.parametrize(
    ("version", "message"),
    [("../etc", "not a version name"), ("v20261122T101500Z-1a2b3c", "not a published version")],
)
def test_latest_names_only_published_versions(tmp_path, version, message):
    with pytest.raises(model_store.ModelCorruptError, match=message):
        model_store.set_latest(tmp_path, version)
    assert not list(tmp_path.iterdir())
