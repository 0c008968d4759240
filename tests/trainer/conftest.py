"""Fixtures for the trainer tests: tiny synthetic MNIST in IDX files."""

from pathlib import Path

import pytest
from support.synthetic_mnist import write_synthetic_mnist


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """Gzipped train and t10k IDX files: 320 training and 64 test digits."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), train=320, test=64, seed=0)
