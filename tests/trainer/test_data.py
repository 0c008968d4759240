"""The data module reads IDX files through the same code path as real MNIST, fetches once, shards."""

import shutil

import numpy as np
import pytest
import torch
from support.synthetic_mnist import render_digits, write_idx, write_synthetic_mnist

from mnist_ddp.data import (
    InMemoryMnist,
    eval_loader,
    fetch_mnist,
    has_split,
    load_mnist,
    random_affine,
    read_split,
    stratified_split,
    train_loader,
)


@pytest.mark.parametrize("compress", [True, False], ids=["gzipped", "plain"])
def test_reads_idx_files_as_distributed(tmp_path, compress):
    write_synthetic_mnist(tmp_path, train=30, test=10, seed=3, compress=compress)
    expected_images, expected_labels = render_digits(30, 3)
    images, labels = read_split(tmp_path, "train")
    assert images.dtype == torch.uint8 and images.shape == (30, 28, 28)
    assert labels.dtype == torch.int64
    assert np.array_equal(images.numpy(), expected_images)
    assert np.array_equal(labels.numpy(), expected_labels)
    data = load_mnist(tmp_path, val_fraction=0.1, seed=0)
    assert data.eval_split == "test"
    assert (len(data.train_labels), len(data.eval_labels)) == (30, 10)


def test_reads_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_synthetic_mnist(raw, train=20, test=10, compress=False)
    assert has_split(tmp_path, "train") and has_split(tmp_path, "test")
    assert read_split(tmp_path, "test")[0].shape == (10, 28, 28)


def test_reads_from_a_read_only_directory(tmp_path):
    write_synthetic_mnist(tmp_path / "ro", train=20, test=0)
    (tmp_path / "ro").chmod(0o555)
    try:
        images, _ = read_split(tmp_path / "ro", "train")
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert images.shape == (20, 28, 28)


def test_without_test_files_a_stratified_holdout_is_evaluated(tmp_path):
    write_synthetic_mnist(tmp_path, train=200, test=0)
    data = load_mnist(tmp_path, val_fraction=0.1, seed=0)
    assert data.eval_split == "holdout"
    assert len(data.eval_labels) == 20 and len(data.train_labels) == 180
    assert torch.bincount(data.eval_labels, minlength=10).tolist() == [2] * 10


def test_stratified_split_is_disjoint_complete_and_seeded():
    labels = torch.arange(100) % 10
    train, holdout = stratified_split(labels, 0.2, seed=1)
    assert sorted(torch.cat([train, holdout]).tolist()) == list(range(100))
    assert torch.bincount(labels[holdout], minlength=10).tolist() == [2] * 10
    assert torch.equal(holdout, stratified_split(labels, 0.2, seed=1)[1])
    assert not torch.equal(holdout, stratified_split(labels, 0.2, seed=2)[1])


def test_missing_files_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MNIST train images and labels file"):
        read_split(tmp_path, "train")


def test_images_of_the_wrong_size_are_a_clear_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 32, 32), np.uint8), compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), compress=True)
    with pytest.raises(ValueError, match="expected 28x28"):
        read_split(tmp_path, "train")


def test_fetch_downloads_once_into_place(tmp_path):
    calls = []

    def download(root):
        calls.append(root)
        write_synthetic_mnist(root / "MNIST" / "raw", train=20, test=10)

    fetch_mnist(tmp_path / "data", download)
    fetch_mnist(tmp_path / "data", download)
    assert len(calls) == 1
    assert calls[0].parent == tmp_path / "data" and calls[0].name.startswith(".")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["MNIST"]
    assert has_split(tmp_path / "data", "train")


def test_a_failed_download_leaves_nothing_half_written(tmp_path):
    def download(root):
        write_synthetic_mnist(root / "MNIST" / "raw", train=20, test=0)
        (root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").unlink()
        raise ConnectionError("network unreachable")

    with pytest.raises(RuntimeError, match=r"could not be downloaded \(network unreachable\)"):
        fetch_mnist(tmp_path, download)
    assert list(tmp_path.iterdir()) == []


def test_pre_seeded_files_are_never_downloaded(tmp_path, mnist_dir):
    def download(root):
        raise AssertionError("must not download")

    data_dir = tmp_path / "seeded"
    shutil.copytree(mnist_dir, data_dir)
    fetch_mnist(data_dir, download)


def test_train_shards_are_disjoint_and_reshuffled_per_epoch():
    dataset = InMemoryMnist(torch.zeros(103, 28, 28, dtype=torch.uint8), torch.arange(103) % 10)
    shards = {}
    for rank in (0, 1):
        loader, sampler = train_loader(dataset, batch_size=8, rank=rank, world_size=2, seed=5)
        epochs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            epochs.append(list(sampler))
            assert sum(len(labels) for _, labels in loader) == 51
        shards[rank] = epochs
    for epoch in (0, 1):
        assert not set(shards[0][epoch]) & set(shards[1][epoch])
        assert len(shards[0][epoch]) == len(shards[1][epoch]) == 51
    assert shards[0][0] != shards[0][1]


def test_eval_shards_cover_every_image_once():
    dataset = InMemoryMnist(torch.zeros(25, 28, 28, dtype=torch.uint8), torch.arange(25) % 10)
    seen = []
    for rank in range(3):
        for _, labels in eval_loader(dataset, batch_size=4, rank=rank, world_size=3):
            seen.extend(labels.tolist())
    assert sorted(seen) == sorted((torch.arange(25) % 10).tolist())


def test_batches_are_uint8_images_with_a_channel():
    dataset = InMemoryMnist(torch.full((10, 28, 28), 255, dtype=torch.uint8), torch.arange(10))
    images, labels = dataset[[3, 1]]
    assert images.shape == (2, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [3, 1]


def test_random_affine_is_reproducible_and_keeps_shape():
    images = torch.rand(6, 1, 28, 28)
    first = random_affine(images, torch.Generator().manual_seed(0))
    again = random_affine(images, torch.Generator().manual_seed(0))
    other = random_affine(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1.0001
