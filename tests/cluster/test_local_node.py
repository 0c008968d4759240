"""The local node on the real control plane: what a kubelet reports and enforces, with small shell pods.

The pods use the `alpine` image, which the node runs with this machine's shell (and
`python3 -m http.server` where a probe needs a server), so each case takes seconds.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.processes import free_port

from local_cluster.node.supervisor import start_time

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    """`python -m local_cluster.node` against the session's cluster, binding the pods of one namespace."""
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("node")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local_cluster.node",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--state-dir={root / 'state'}",
            f"--volumes-dir={root / 'volumes'}",
            f"--bind-namespace={namespace}",
            "--backoff-seconds=1",
            "--no-seldon-standin",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=(root / "node.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "node", "local-node", check=False).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, (root / "node.log").read_text()
        time.sleep(0.3)
    yield {"namespace": namespace, "root": root, "proc": proc, "cluster": cluster}
    proc.terminate()
    proc.wait(timeout=60)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def apply(node, *objects: dict) -> None:
    for obj in objects:
        obj.setdefault("metadata", {})["namespace"] = node["namespace"]
    node["cluster"].apply_objects(list(objects))


def get(node, kind: str, name: str) -> dict | None:
    done = node["cluster"].kubectl("get", kind, name, "-n", node["namespace"], "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def wait_for(check, timeout: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.3)


def shell_pod(name: str, script: str, restart: str = "Never", **spec) -> dict:
    container = {"name": "main", "image": "alpine:3.20", "command": ["sh", "-c", script]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": restart, "containers": [container], **spec},
    }


def log_of(node, pod: dict, container: str = "main") -> str:
    meta = pod["metadata"]
    path = node["root"] / "state" / "logs" / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    return (path / f"{container}.log").read_text() if (path / f"{container}.log").exists() else ""


def phase(node, name: str) -> str | None:
    pod = get(node, "pod", name)
    return pod and pod.get("status", {}).get("phase")


def test_the_node_is_registered_ready_and_binds_unscheduled_pods(node):
    listed = json.loads(node["cluster"].kubectl("get", "node", "local-node", "-o", "json").stdout)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in listed["status"]["conditions"])
    lease = json.loads(
        node["cluster"].kubectl("get", "lease", "-n", "kube-node-lease", "local-node", "-o", "json").stdout
    )
    assert lease["spec"]["holderIdentity"] == "local-node"
    apply(
        node,
        shell_pod(
            "succeeds",
            "echo hello from $POD_NAME",
            container={"env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
        ),
    )
    wait_for(lambda: phase(node, "succeeds") == "Succeeded", what="Succeeded")
    pod = get(node, "pod", "succeeds")
    assert pod["spec"]["nodeName"] == "local-node"
    status = pod["status"]["containerStatuses"][0]
    assert status["state"]["terminated"]["exitCode"] == 0 and status["state"]["terminated"]["reason"] == "Completed"
    assert "hello from succeeds" in log_of(node, pod)
    # kubectl logs: the API server asks the node's kubelet endpoint.
    logs = node["cluster"].kubectl("logs", "succeeds", "-n", node["namespace"])
    assert logs.stdout == "hello from succeeds\n"


def test_never_fails_the_pod_with_the_exit_code(node):
    apply(node, shell_pod("fails", "exit 3"))
    wait_for(lambda: phase(node, "fails") == "Failed", what="Failed")
    status = get(node, "pod", "fails")["status"]["containerStatuses"][0]
    assert status["state"]["terminated"] == {**status["state"]["terminated"], "exitCode": 3, "reason": "Error"}
    assert status["restartCount"] == 0


def test_on_failure_restarts_with_backoff_and_counts_restarts(node):
    apply(node, shell_pod("crashes", "echo run; exit 2", restart="OnFailure"))

    def restarted_twice():
        pod = get(node, "pod", "crashes")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 2 else None

    status = wait_for(restarted_twice, 60, "restarted twice")
    assert status["lastState"]["terminated"]["exitCode"] == 2
    pod = get(node, "pod", "crashes")
    assert pod["status"]["phase"] == "Running"
    assert log_of(node, pod).count("run") >= 3
    crash_loop = wait_for(
        lambda: (s := get(node, "pod", "crashes")["status"]["containerStatuses"][0]["state"]).get("waiting") and s,
        30,
        "waiting in back-off",
    )
    assert crash_loop["waiting"]["reason"] == "CrashLoopBackOff"


def test_init_containers_run_in_order_before_the_containers(node):
    pod = shell_pod(
        "initialised", "cat /work/order", container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]}
    )
    pod["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    pod["spec"]["initContainers"] = [
        {
            "name": f"init-{i}",
            "image": "alpine:3.20",
            "command": ["sh", "-c", f"echo init-{i} >> /work/order"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }
        for i in (1, 2)
    ]
    apply(node, pod)
    wait_for(lambda: phase(node, "initialised") == "Succeeded", what="Succeeded")
    pod = get(node, "pod", "initialised")
    assert log_of(node, pod).split() == ["init-1", "init-2"]
    assert [s["state"]["terminated"]["exitCode"] for s in pod["status"]["initContainerStatuses"]] == [0, 0]


def test_a_failed_init_container_under_never_fails_the_pod_and_the_container_never_starts(node):
    pod = shell_pod("init-fails", "echo main ran")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "alpine:3.20", "command": ["sh", "-c", "exit 4"]}]
    apply(node, pod)
    wait_for(lambda: phase(node, "init-fails") == "Failed", what="Failed")
    pod = get(node, "pod", "init-fails")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    assert "main ran" not in log_of(node, pod)


def server_pod(name: str, port: int, **probes) -> dict:
    return shell_pod(
        name,
        f"exec python3 -m http.server {port} --bind 127.0.0.1 --directory /tmp",
        restart="Always",
        container={"ports": [{"name": "http", "containerPort": port}], **probes},
    )


def test_readiness_makes_the_pod_ready_and_a_failing_liveness_probe_restarts_the_container(node):
    port = free_port()
    probe = {"periodSeconds": 1, "failureThreshold": 2}
    apply(
        node,
        server_pod(
            "server",
            port,
            readinessProbe={"tcpSocket": {"port": "http"}, **probe},
            livenessProbe={"httpGet": {"path": "/no-such-file", "port": port}, "initialDelaySeconds": 2, **probe},
        ),
    )

    def ready():
        pod = get(node, "pod", "server")
        conditions = {c["type"]: c["status"] for c in (pod or {}).get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True"

    wait_for(ready, 60, "Ready")
    status = wait_for(
        lambda: (s := get(node, "pod", "server")["status"]["containerStatuses"][0])["restartCount"] >= 1 and s,
        60,
        "restarted by its liveness probe",
    )
    assert status["lastState"]["terminated"]["exitCode"] != 0, status


def test_a_startup_probe_holds_the_other_probes_and_restarts_a_container_that_never_starts(node):
    port = free_port()
    slow = shell_pod(
        "slow-start",
        f"sleep 3; exec python3 -m http.server {port} --bind 127.0.0.1 --directory /tmp",
        restart="Always",
        container={
            "ports": [{"name": "http", "containerPort": port}],
            "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
            # Before the port opens, this would kill the container at once if the startup probe did not hold it.
            "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            # An hour between readiness probes: Ready within the test means none was tried before startup passed.
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 3600},
        },
    )
    never = shell_pod(
        "never-starts",
        "exec sleep 1000",
        restart="Always",
        container={
            "ports": [{"name": "http", "containerPort": free_port()}],
            "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 2},
        },
    )
    apply(node, slow, never)

    def ready_status():
        pod = get(node, "pod", "slow-start") or {}
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True" and pod["status"]["containerStatuses"][0]

    status = wait_for(ready_status, 60, "Ready after its startup probe")
    assert status["started"] is True and status["restartCount"] == 0, status
    restarted = wait_for(
        lambda: (s := get(node, "pod", "never-starts")["status"]["containerStatuses"][0])["restartCount"] >= 1 and s,
        60,
        "restarted by its startup probe",
    )
    assert restarted["started"] is False and restarted["ready"] is False, restarted
    assert restarted["lastState"]["terminated"]["exitCode"] != 0, restarted


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period_and_removes_the_pod(node):
    apply(
        node,
        shell_pod("polite", "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done", restart="Always"),
        shell_pod(
            "stubborn",
            "trap 'echo ignoring TERM' TERM; while true; do sleep 0.1; done",
            restart="Always",
            terminationGracePeriodSeconds=3,
        ),
    )
    for name in ("polite", "stubborn"):
        wait_for(lambda n=name: phase(node, n) == "Running", what=f"{name} Running")
    pods = {name: get(node, "pod", name) for name in ("polite", "stubborn")}
    keepers = {
        n: int(p["status"]["containerStatuses"][0]["containerID"].removeprefix("local://")) for n, p in pods.items()
    }
    started = time.monotonic()
    node["cluster"].kubectl(
        "delete", "pod", "polite", "stubborn", "-n", node["namespace"], "--wait=true", "--timeout=60s"
    )
    took = time.monotonic() - started
    assert get(node, "pod", "polite") is None and get(node, "pod", "stubborn") is None
    assert "got TERM" in log_of(node, pods["polite"])
    assert "ignoring TERM" in log_of(node, pods["stubborn"])
    assert took >= 3, f"the stubborn pod was killed before its grace period ({took:.1f} s)"
    assert all(start_time(pid) is None for pid in keepers.values()), "a container outlived its pod"


def test_a_claim_gets_a_local_volume_and_service_names_resolve_to_local_ports(node):
    port = free_port()
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    server = server_pod("web", port, readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1})
    server["metadata"]["labels"] = {"app": "web"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    apply(node, claim, server, service)
    wait_for(lambda: phase(node, "web") == "Running", what="web Running")
    client = shell_pod(
        "client",
        "echo $TARGET > /data/target; nslookup web.$NS.svc.cluster.local",
        container={
            "env": [
                {"name": "TARGET", "value": "http://web:80/index.html"},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
    )
    client["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    apply(node, client)
    wait_for(lambda: phase(node, "client") in ("Succeeded", "Failed"), what="finished")
    assert phase(node, "client") == "Succeeded", log_of(node, get(node, "pod", "client"))
    pvc = get(node, "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    pv = json.loads(node["cluster"].kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    folder = Path(pv["spec"]["hostPath"]["path"])
    assert folder == node["root"] / "volumes" / node["namespace"] / "data"
    assert (folder / "target").read_text().strip() == f"http://127.0.0.1:{port}/index.html"


def test_a_container_that_cannot_be_configured_says_why(node):
    apply(
        node,
        shell_pod(
            "misconfigured",
            "echo never",
            container={"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]},
        ),
    )
    waiting = wait_for(
        lambda: (
            (s := ((get(node, "pod", "misconfigured") or {}).get("status", {}).get("containerStatuses") or [{}])[0])
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            == "CreateContainerConfigError"
        )
        and s["state"]["waiting"],
        30,
        "CreateContainerConfigError",
    )
    assert "Pod/misconfigured container main: env X reads key 'k' of ConfigMap 'absent'" in waiting["message"]
