"""Published model versions: LATEST only ever names a complete version, and a failed publish changes nothing."""

import json
import os
from pickle import PicklingError

import pytest
import torch

from mnist_ddp import model_store
from mnist_ddp.model import ARCHITECTURE, build_model


def state_dict(seed: int) -> dict:
    torch.manual_seed(seed)
    return build_model().state_dict()


def publish(root, seed: int) -> str:
    return model_store.publish_model(root, state_dict(seed), {"architecture": ARCHITECTURE})


def problem_with_latest(root) -> str | None:
    """Why the version LATEST names is not complete right now, or None (also when there is no LATEST yet)."""
    latest = root / model_store.LATEST
    if not latest.exists():
        return None
    version = latest.read_text().strip()
    metadata_path = root / version / model_store.METADATA_FILE
    model_path = root / version / model_store.MODEL_FILE
    if not metadata_path.is_file() or not model_path.is_file():
        return f"LATEST names {version}, whose directory holds {sorted(p.name for p in (root / version).glob('*'))}"
    metadata = json.loads(metadata_path.read_text())
    if metadata.get("sha256") != model_store.sha256_file(model_path):
        return f"LATEST names {version}, whose model.pt does not match its metadata.json yet"
    return None


class LatestWatch:
    """Checks the model root before and after every rename, replace and fsync the process makes.

    Whichever way LATEST gets written, one of these calls comes between that write and the
    version directory's rename into place, so a LATEST that runs ahead of its version is seen.
    """

    def __init__(self, root, monkeypatch):
        self.root = root
        self.problems: list[str] = []
        self.seen: list[str | None] = []
        for name in ("rename", "replace", "fsync"):
            monkeypatch.setattr(os, name, self._watched(name, getattr(os, name)))

    def _watched(self, name, call):
        def watched(*args, **kwargs):
            self._check(f"before os.{name}")
            result = call(*args, **kwargs)
            self._check(f"after os.{name}")
            return result

        return watched

    def _check(self, when: str) -> None:
        latest = self.root / model_store.LATEST
        self.seen.append(latest.read_text().strip() if latest.exists() else None)
        problem = problem_with_latest(self.root)
        if problem is not None:
            self.problems.append(f"{when}: {problem}")


def test_latest_names_only_complete_versions_at_every_step(tmp_path, monkeypatch):
    root = tmp_path / "models"
    watch = LatestWatch(root, monkeypatch)
    first = publish(root, seed=1)
    second = publish(root, seed=2)
    assert watch.problems == []
    # The watch saw LATEST absent, then naming each version in turn: it was looking while LATEST changed.
    assert [v for i, v in enumerate(watch.seen) if i == 0 or v != watch.seen[i - 1]] == [None, first, second]
    assert model_store.read_latest(root) == second


def test_a_published_version_loads_verified_with_its_metadata(tmp_path):
    root = tmp_path / "models"
    expected = state_dict(seed=3)
    version = model_store.publish_model(root, expected, {"architecture": ARCHITECTURE, "epochs": 2})
    state, metadata = model_store.load_published(root)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    assert metadata["version"] == version and metadata["epochs"] == 2
    assert metadata["sha256"] == model_store.sha256_file(root / version / model_store.MODEL_FILE)
    assert sorted(p.name for p in root.iterdir()) == sorted([model_store.LATEST, version])
    assert (root / model_store.LATEST).read_text() == version + "\n"


@pytest.mark.parametrize(
    ("state", "metadata", "error"),
    [
        # torch.save fails part-way through model.pt: a lambda cannot be pickled.
        ({"weight": torch.ones(3), "not_a_tensor": lambda: None}, {"architecture": ARCHITECTURE}, PicklingError),
        # model.pt is written, then metadata.json cannot be.
        ({"weight": torch.ones(3)}, {"architecture": ARCHITECTURE, "not_json": object()}, TypeError),
    ],
    ids=["torch-save-fails", "metadata-fails"],
)
def test_a_failed_publish_leaves_latest_and_the_root_as_they_were(tmp_path, state, metadata, error):
    root = tmp_path / "models"
    first = publish(root, seed=4)
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(error):
        model_store.publish_model(root, state, metadata)
    assert model_store.read_latest(root) == first
    assert sorted(p.name for p in root.iterdir()) == before, "a staging directory was left behind"


def test_a_failed_first_publish_leaves_no_latest(tmp_path):
    root = tmp_path / "models"
    with pytest.raises(TypeError):
        model_store.publish_model(root, {"weight": torch.ones(3)}, {"not_json": object()})
    assert list(root.iterdir()) == []
    with pytest.raises(model_store.ModelNotPublishedError, match="no model published yet"):
        model_store.read_latest(root)


@pytest.mark.parametrize("content", ["", "../etc\n", "v1\n", "v20261122T101500Z-1a2b3c/../x\n"])
def test_latest_naming_no_version_is_corrupt(tmp_path, content):
    (tmp_path / model_store.LATEST).write_text(content)
    with pytest.raises(model_store.ModelCorruptError, match="which is not a version name"):
        model_store.read_latest(tmp_path)


def test_a_version_whose_files_do_not_verify_is_corrupt(tmp_path):
    root = tmp_path / "models"
    version = publish(root, seed=5)
    model_path = root / version / model_store.MODEL_FILE
    model_path.write_bytes(model_path.read_bytes() + b"\0")
    with pytest.raises(model_store.ModelCorruptError, match=r"does not match metadata\.json"):
        model_store.load_published(root)
    model_path.unlink()
    with pytest.raises(model_store.ModelCorruptError, match="cannot read"):
        model_store.load_published(root, version)
    (root / version / model_store.METADATA_FILE).write_text("{not json")
    with pytest.raises(model_store.ModelCorruptError, match="cannot read"):
        model_store.read_metadata(root, version)


def test_new_version_names_are_unique_and_accepted_by_read_latest(tmp_path):
    names = {model_store.new_version_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        (tmp_path / model_store.LATEST).write_text(name + "\n")
        assert model_store.read_latest(tmp_path) == name
