"""The trainer's MNIST download over real HTTP (a loopback server): progress lines, mirrors, md5."""

import hashlib
import http.server
import logging
import random
import threading
from functools import partial

import pytest

from mnist_ddp.data import download_with_progress, fetch_mnist, has_split, read_split

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(mnist_dir, tmp_path):
    """A loopback HTTP server: /good/ serves the sample's files, /missing/ answers 404 for everything."""
    (tmp_path / "site" / "missing").mkdir(parents=True)
    (tmp_path / "site" / "good").symlink_to(mnist_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=tmp_path / "site"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def resources(mnist_dir):
    return tuple((name, hashlib.md5((mnist_dir / name).read_bytes()).hexdigest()) for name in FILES)


def test_downloads_each_file_from_the_first_mirror_that_has_it_and_logs_progress(mirror, mnist_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mnist_ddp.data")
    data_dir = tmp_path / "data"
    mirrors = (f"{mirror}/missing/", f"{mirror}/good/")
    fetch_mnist(data_dir, partial(download_with_progress, mirrors=mirrors, resources=resources(mnist_dir)))
    assert has_split(data_dir, "train") and has_split(data_dir, "test")
    for name in FILES:
        assert (data_dir / "MNIST" / "raw" / name).read_bytes() == (mnist_dir / name).read_bytes()
    images, labels = read_split(data_dir, "train")
    assert images.shape == (320, 28, 28) and labels.shape == (320,)
    assert f"downloading {mirror}/good/{FILES[0]}" in caplog.text


def test_progress_is_logged_per_quarter_of_the_file(mirror, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mnist_ddp.data")
    payload = random.Random(0).randbytes(1_000_000)
    (tmp_path / "site" / "missing" / "big.bin").write_bytes(payload)
    digest = hashlib.md5(payload).hexdigest()
    download_with_progress(tmp_path / "root", mirrors=(f"{mirror}/missing/",), resources=(("big.bin", digest),))
    assert (tmp_path / "root" / "MNIST" / "raw" / "big.bin").read_bytes() == payload
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == f"downloading {mirror}/missing/big.bin (1.0 MB)"
    progress = [m for m in messages if m.startswith("  big.bin: ")]
    percents = [int(m.split("(")[1].rstrip("%)")) for m in progress]
    # Read in 64 KiB chunks: each quarter is reported once, at the first chunk past it.
    assert len(percents) == 3 and [p // 25 for p in percents] == [1, 2, 3], progress
    assert all(" of 1.0 MB (" in m for m in progress)


def test_a_file_with_another_md5_is_refused_on_every_mirror(mirror, mnist_dir, tmp_path):
    wrong = tuple((name, "0" * 32) for name, _ in resources(mnist_dir))
    with pytest.raises(RuntimeError, match=r"could not be downloaded .*md5 is not 0{32}"):
        fetch_mnist(tmp_path / "data", partial(download_with_progress, mirrors=(f"{mirror}/good/",), resources=wrong))
    assert list((tmp_path / "data").iterdir()) == [], "nothing half-written is left"


def test_no_mirror_having_the_file_names_each_attempt(mirror, mnist_dir, tmp_path):
    mirrors = (f"{mirror}/missing/", f"{mirror}/also-missing/")
    with pytest.raises(RuntimeError, match=r"missing/train-images-idx3-ubyte\.gz: HTTP Error 404.*also-missing/"):
        fetch_mnist(tmp_path / "data", partial(download_with_progress, mirrors=mirrors, resources=resources(mnist_dir)))
