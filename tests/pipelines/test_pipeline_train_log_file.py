"""`train`'s fallback for the Master's log where the API server cannot serve pods/log (the local node of
`make pipeline-local` is no kubelet): it follows the node's log file, each restart from where the last ended."""

import threading
from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException

from mnist_pipeline import kube

NAMESPACE, POD, UID = "default", "mnist-ddp-master-0", "0c5e-uid"


def master(restarts: int, running: bool) -> SimpleNamespace:
    state = SimpleNamespace(running=SimpleNamespace() if running else None)
    status = SimpleNamespace(name="pytorch", restart_count=restarts, state=state)
    return SimpleNamespace(
        metadata=SimpleNamespace(name=POD, uid=UID),
        status=SimpleNamespace(phase="Running", container_statuses=[status]),
    )


class NodeWithoutLogs:
    """The core API as the local cluster answers it: pods from a script, pods/log a 500."""

    def __init__(self, log_file, script):
        self.log_file = log_file
        self.script = list(script)  # (lines appended to the file, then the pod the API reports)
        self.pod = master(0, True)

    def _advance(self):
        if self.script:
            lines, self.pod = self.script.pop(0)
            with self.log_file.open("a") as out:
                out.writelines(f"{line}\n" for line in lines)
        return self.pod

    def list_namespaced_pod(self, namespace, label_selector):
        # A container that has ended is restarted by the time the step looks again (restartPolicy OnFailure).
        if self.pod.status.container_statuses[0].state.running is None:
            self._advance()
        return SimpleNamespace(items=[self.pod])

    def read_namespaced_pod(self, name, namespace):
        return self._advance()

    def read_namespaced_pod_log(self, *args, **kwargs):
        raise ApiException(status=500, reason="Internal Server Error")


def test_the_masters_log_comes_from_the_node_file_across_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(kube, "POLL_SECONDS", 0.01)
    log_dir = tmp_path / "pods"
    log_file = log_dir / f"{NAMESPACE}_{POD}_{UID}" / "pytorch.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("epoch 1/3\n")
    node = NodeWithoutLogs(
        log_file,
        [
            (["epoch 2/3", "Killed"], master(0, False)),  # the container ends
            ([], master(1, True)),  # restarted
            (["resuming: 2 of 3 epochs done", "epoch 3/3"], master(1, True)),
            (["published v1"], master(1, False)),  # ends for good
        ],
    )
    client = kube.JobClient(NAMESPACE, pod_logs_dir=log_dir)
    client.core = node
    lines: list[str] = []
    stop = threading.Event()
    follower = threading.Thread(target=client.stream_master_logs, args=("mnist-ddp", stop, lines.append))
    follower.start()
    try:
        for _ in range(500):
            if lines and lines[-1].endswith("published v1"):
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        follower.join(timeout=10)
    assert lines[0].startswith(f"[{POD}] the API server cannot serve its log (500 Internal Server Error")
    assert lines[0].endswith(f"following the local node's log file in {log_dir} instead")
    assert lines[1:] == [
        f"[{POD}] {line}"
        for line in ("epoch 1/3", "epoch 2/3", "Killed", "resuming: 2 of 3 epochs done", "epoch 3/3", "published v1")
    ]
