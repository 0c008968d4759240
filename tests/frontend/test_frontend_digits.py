"""Reading MNIST IDX files for the random digit button."""

import gzip
import struct

import pytest
from mnist_files import write_idx_split

from mnist_frontend.digits import DigitDataError, DigitStore, find_split, load_split, read_idx

ONE = [0] * 300 + [255] * 184 + [0] * 300
TWO = [128] * 784


@pytest.mark.parametrize("compress", [True, False])
def test_reads_gzipped_and_plain_files(tmp_path, compress):
    write_idx_split(tmp_path, "train", [ONE, TWO], [1, 2], compress=compress)
    split, images, labels = find_split(tmp_path)
    assert (split, images.name.endswith(".gz")) == ("train", compress)
    digits = load_split(split, images, labels)
    assert len(digits) == 2
    digit = digits.digit(1)
    assert (digit.label, digit.index, digit.split, digit.rows, digit.cols) == (2, 1, "train", 28, 28)
    assert digit.pixels == bytes(TWO)


def test_prefers_the_test_split(tmp_path):
    write_idx_split(tmp_path, "train", [ONE], [1])
    write_idx_split(tmp_path, "t10k", [TWO], [2])
    assert find_split(tmp_path)[0] == "t10k"


def test_finds_the_torchvision_layout(tmp_path):
    write_idx_split(tmp_path / "MNIST" / "raw", "t10k", [TWO], [2], compress=False)
    assert find_split(tmp_path)[0] == "t10k"


def test_needs_both_images_and_labels(tmp_path):
    write_idx_split(tmp_path, "t10k", [TWO], [2])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_split(tmp_path) is None
    assert find_split(tmp_path / "does-not-exist") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file with magic number 2051"),
        (struct.pack(">IIII", 2049, 1, 28, 28) + bytes(784), "not an IDX file with magic number 2051"),
        (struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784), "header says"),
    ],
)
def test_bad_image_files(tmp_path, content, message):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DigitDataError, match=message):
        read_idx(path, 2051, 3)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 1, 28, 28) + bytes(784))[:-10])
    with pytest.raises(DigitDataError, match="cannot read"):
        read_idx(path, 2051, 3)


def test_counts_must_match(tmp_path):
    write_idx_split(tmp_path, "t10k", [ONE, TWO], [1])
    with pytest.raises(DigitDataError, match=r"holds 2 images but .* holds 1 labels"):
        load_split(*find_split(tmp_path))


def test_labels_must_be_digits(tmp_path):
    write_idx_split(tmp_path, "t10k", [ONE], [10])
    with pytest.raises(DigitDataError, match="outside 0-9"):
        load_split(*find_split(tmp_path))


def test_store_without_data(tmp_path):
    for store in (DigitStore(None), DigitStore(tmp_path)):
        assert store.split() is None
        assert store.random_digit() is None


def test_store_finds_files_that_arrive_later(tmp_path):
    store = DigitStore(tmp_path, seed=0)
    assert store.split() is None
    write_idx_split(tmp_path, "train", [ONE, TWO], [1, 2])
    assert store.split() == "train"
    labels = {store.random_digit().label for _ in range(30)}
    assert labels == {1, 2}
