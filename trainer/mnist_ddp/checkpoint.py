"""Training snapshots on the shared volume, written atomically, loadable with weights_only=True.

One file per job (`<checkpoint-dir>/checkpoint.pt`), replaced after every epoch: written to a
temporary name in the same directory, flushed to disk, then renamed over the old one. A crash
at any moment leaves either the previous snapshot or the new one, never a torn file.
"""

import os
import random
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    """Where the job's snapshot lives."""
    return Path(checkpoint_dir) / CHECKPOINT_FILE


def save_checkpoint(checkpoint_dir: str | os.PathLike, state: dict) -> Path:
    """Atomically replace the snapshot in `checkpoint_dir` with `state`; return its path."""
    path = checkpoint_path(checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> dict | None:
    """The job's snapshot, or None if there is none yet (a fresh start)."""
    path = checkpoint_path(checkpoint_dir)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict:
    """This process's random number generator states (torch CPU and CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore the states saved by `rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
