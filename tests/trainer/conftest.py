"""Fixtures for the trainer tests: tiny synthetic MNIST in IDX files, and the machine's GPUs for the GPU variants."""

from pathlib import Path

import gpus
import pytest
from support.synthetic_mnist import write_synthetic_mnist

# A test means CPU unless it asks for GPUs (the `gpu` marker, test_gpu.py): hidden before any test runs.
gpus.hide_gpus()


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """Gzipped train and t10k IDX files: 320 training and 64 test digits."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), train=320, test=64, seed=0)


@pytest.fixture(scope="session")
def host_gpus() -> list[str]:
    """The machine's GPUs (CUDA_VISIBLE_DEVICES entries); skips the test when there is none."""
    devices = gpus.host_devices()
    if not devices:
        pytest.skip("no CUDA GPU on this machine (the GPU variants run where `nvidia-smi` lists one)")
    return devices


@pytest.fixture
def two_gpus(host_gpus) -> list[str]:
    """Two of the machine's GPUs: NCCL refuses two ranks on one GPU ("Duplicate GPU detected")."""
    if len(host_gpus) < 2:
        pytest.skip(f"needs 2 GPUs for 2 NCCL ranks, this machine has {len(host_gpus)}")
    return host_gpus[:2]
