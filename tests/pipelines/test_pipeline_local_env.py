"""Where a step opens the claim's paths: as compiled in a pod, under PIPELINE_LOCAL_PVC_DIR in `make pipeline-local`."""

from pathlib import Path

import pytest

from mnist_pipeline import local_env


def test_in_a_pod_the_paths_are_the_mounts(monkeypatch):
    monkeypatch.delenv(local_env.PVC_DIR, raising=False)
    monkeypatch.delenv(local_env.POD_LOGS, raising=False)
    assert local_env.on_this_machine("/mnt/pvc/models/mnist") == Path("/mnt/pvc/models/mnist")
    assert local_env.pod_logs_dir() is None


def test_locally_the_claims_paths_are_under_its_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(local_env.PVC_DIR, str(tmp_path / "mnist-pvc"))
    assert local_env.on_this_machine("/mnt/pvc/models/mnist") == tmp_path / "mnist-pvc" / "models" / "mnist"
    assert local_env.on_this_machine("/mnt/pvc") == tmp_path / "mnist-pvc"


@pytest.mark.parametrize("path", ["/mnt/pvcs/models", "/tmp/models", "models/mnist"])
def test_a_path_outside_the_mount_is_refused_locally(monkeypatch, tmp_path, path):
    monkeypatch.setenv(local_env.PVC_DIR, str(tmp_path))
    with pytest.raises(ValueError, match=r"is not under /mnt/pvc, where the pods mount the claim"):
        local_env.on_this_machine(path)
