"""scripts/deploy.sh and scripts/teardown.sh for real against the local control plane, not --dry-run.

deploy.sh applies the overlay and then waits for the job to succeed, which needs a node: here it stops
at its --timeout, as it would on a cluster with no room for the pods, after creating every object.
"""

import os
import subprocess
import sys
from pathlib import Path

from manifests.rendering import REPO

TUTORIAL_OBJECTS = (
    "pytorchjob/mnist-ddp",
    "seldondeployment/mnist-classifier",
    "deployment/mnist-frontend",
    "service/mnist-frontend",
    "networkpolicy",
)


def run_script(cluster, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        # The pinned kubectl of the tools environment first, as a user's own kubectl would be.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        [str(REPO / "scripts" / args[0]), *args[1:]],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


def names(cluster, namespace: str, what: str) -> list[str]:
    done = cluster.kubectl("get", what, "-n", namespace, "-o", "name", check=False)
    return done.stdout.split()


def test_deploy_then_teardown_keeping_the_pvc(cluster, restricted_namespace):
    ns = restricted_namespace
    deployed = run_script(cluster, "deploy.sh", "cpu", "--namespace", ns, "--timeout", "15s")
    assert deployed.returncode == 1, deployed.stdout + deployed.stderr
    assert "deploy.sh: pytorchjob/mnist-ddp did not succeed within 15s" in deployed.stderr
    for what in TUTORIAL_OBJECTS:
        assert names(cluster, ns, what), f"deploy.sh did not create {what}:\n{deployed.stdout}"
    assert names(cluster, ns, "pvc") == ["persistentvolumeclaim/mnist-pvc"]
    assert "pod/mnist-ddp-master-0" in names(cluster, ns, "pods")

    torn_down = run_script(cluster, "teardown.sh", "cpu", "--namespace", ns, "--keep-pvc")
    assert torn_down.returncode == 0, torn_down.stdout + torn_down.stderr
    for what in TUTORIAL_OBJECTS:
        assert names(cluster, ns, what) == [], f"teardown.sh left {what}"
    assert names(cluster, ns, "pvc") == ["persistentvolumeclaim/mnist-pvc"], "--keep-pvc must keep the PVC"
