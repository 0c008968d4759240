"""`make cluster-up` and `make cluster-down` (python -m local_cluster up|down): both can be run twice, every
server listens on loopback, and down leaves no process behind."""

import json
import os
import subprocess
import sys

import pytest
from manifests.rendering import REPO
from manifests.strict_schema import crds_dir
from support.proc import listening_sockets, process_tree, running

# The Training Operator's and KServe's main.go take the webhook server's port but not its address
# (controller-runtime's webhook.Options.Host is not exposed), so their webhooks alone listen on every
# interface (docs/manifests.md).
EVERY_INTERFACE_ALLOWED = {"training-operator": "operator_webhook", "kserve-controller-manager": "kserve_webhook"}


def local_cluster(command: str, state_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "local_cluster", command, "--state-dir", str(state_dir), "--crds-dir", str(crds_dir())],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.fixture(scope="session")
def second_cluster(cluster, tmp_path_factory):
    """A cluster of its own, started and stopped through the command line (after the session's is up, so
    that the binaries are built)."""
    state_dir = tmp_path_factory.mktemp("cli-cluster")
    yield state_dir
    local_cluster("down", state_dir)


def test_up_twice_loopback_only_then_down_twice(second_cluster):
    first = local_cluster("up", second_cluster)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={second_cluster / 'kubeconfig'}"
    again = local_cluster("up", second_cluster)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout

    records = json.loads((second_cluster / "processes.json").read_text())
    assert [r["name"] for r in records] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "training-operator",
        "jobset",
        "trainer-controller-manager",
        "kserve-controller-manager",
    ]
    ports = json.loads((second_cluster / "ports.json").read_text())
    pids = [pid for r in records for pid in process_tree(r["pid"])]
    names = {pid: r["name"] for r in records for pid in process_tree(r["pid"])}
    for pid, address, port in listening_sockets(pids):
        allowed = EVERY_INTERFACE_ALLOWED.get(names[pid])
        if allowed and port == ports[allowed]:
            continue
        assert address in ("127.0.0.1", "::ffff:127.0.0.1"), f"{names[pid]} listens on {address}:{port}"

    down = local_cluster("down", second_cluster)
    assert down.returncode == 0, down.stderr
    assert (
        "stopped etcd, kube-apiserver, kube-controller-manager, training-operator, jobset, trainer-controller-manager,"
        " kserve-controller-manager" in (down.stdout)
    )
    assert running(pids) == [], "cluster-down left processes running"
    down_again = local_cluster("down", second_cluster)
    assert down_again.returncode == 0
    assert "nothing was running" in down_again.stdout
