"""Snapshots: atomic replacement, weights_only loading, random generator states."""

import random

import numpy as np
import torch

from mnist_ddp.checkpoint import checkpoint_path, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert load_checkpoint(tmp_path / "missing") is None


def test_save_replaces_the_snapshot_and_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path, {"epochs_run": 1, "weights": torch.ones(3)})
    save_checkpoint(tmp_path, {"epochs_run": 2, "weights": torch.zeros(3)})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint_path(tmp_path).name]
    state = load_checkpoint(tmp_path)
    assert state["epochs_run"] == 2 and torch.equal(state["weights"], torch.zeros(3))


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path, {"rng": rng_state()})
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path)["rng"])
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]
