"""The `train` step's calls to the Kubernetes API: a thin layer over the decisions in `job`.

It uses exactly what the pipeline's Role allows: pytorchjobs create/get/list/watch/delete,
pods and pods/log get/list.
"""

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from mnist_pipeline import job as jobs

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
POLL_SECONDS = 5.0
DELETE_TIMEOUT_SECONDS = 300.0


def current_namespace() -> str:
    """The namespace this pod runs in (the ServiceAccount's), else `default`."""
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default"


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the local kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text lines of a byte stream that arrives in chunks of any size (a followed pod log)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace")


def status_message(exc: ApiException) -> str:
    """The message of the API server's Status in an error response, else its body as it came."""
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.body)


class JobClient:
    """PyTorchJobs and their Master's logs in one namespace.

    `pod_logs_dir` is a local node's pod log folder, read only when the API server cannot serve
    `pods/log` (see `local_env`); None on a cluster.
    """

    def __init__(self, namespace: str, api_client: client.ApiClient | None = None, pod_logs_dir: Path | None = None):
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.pod_logs_dir = pod_logs_dir

    def get(self, name: str) -> dict | None:
        """The job, or None if there is none of that name."""
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: dict) -> dict:
        """Create the job."""
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def delete_and_wait(self, name: str, timeout: float = DELETE_TIMEOUT_SECONDS) -> None:
        """Delete the job with its pods (foreground) and wait until it is gone."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        deadline = time.monotonic() + timeout
        while self.get(name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PyTorchJob {name} was deleted but still exists after {timeout:.0f} s")
            time.sleep(1.0)

    def stream_master_logs(self, job_name: str, stop: threading.Event, write: Callable[[str], None]) -> None:
        """Follow the Master's trainer log, again after each restart, until `stop` is set."""
        followed: set[tuple[str, int]] = set()
        from_files = False
        offsets: dict[Path, int] = {}
        while not stop.is_set():
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=jobs.master_selector(job_name)).items
            started = [p for p in pods if p.status and p.status.phase in ("Running", "Succeeded", "Failed")]
            if not started:
                stop.wait(POLL_SECONDS)
                continue
            pod = started[0]
            restarts = sum(s.restart_count for s in pod.status.container_statuses or [])
            if (pod.metadata.uid, restarts) in followed:
                stop.wait(POLL_SECONDS)
                continue
            followed.add((pod.metadata.uid, restarts))
            if from_files:
                self._follow_log_file(pod, stop, write, offsets)
                continue
            try:
                stream = self.core.read_namespaced_pod_log(
                    pod.metadata.name,
                    self.namespace,
                    container=jobs.TRAINER_CONTAINER,
                    follow=True,
                    _preload_content=False,
                )
                for line in lines(stream.stream()):
                    write(f"[{pod.metadata.name}] {line}")
            except ApiException as exc:
                if self.pod_logs_dir is not None:
                    write(
                        f"[{pod.metadata.name}] the API server cannot serve its log ({exc.status} {exc.reason}: "
                        f"{status_message(exc)}): following the local node's log file in {self.pod_logs_dir} instead"
                    )
                    from_files = True
                    self._follow_log_file(pod, stop, write, offsets)
                    continue
                # A container that is restarting has no log yet: try again on the next round.
                write(f"[{pod.metadata.name}] log unavailable ({exc.status} {exc.reason}); retrying")
                followed.discard((pod.metadata.uid, restarts))
                stop.wait(POLL_SECONDS)

    def _follow_log_file(self, pod, stop: threading.Event, write: Callable[[str], None], offsets: dict) -> None:
        """Print the trainer's new lines from the node's log file until its container stops running, or `stop`.

        The node appends every run of a container to the same file, so `offsets` remembers where the
        previous run's lines ended.
        """
        name = pod.metadata.name
        path = self.pod_logs_dir / f"{self.namespace}_{name}_{pod.metadata.uid}" / f"{jobs.TRAINER_CONTAINER}.log"
        while True:
            # Looked at before reading, so that the lines of a container that just ended are all read.
            done = stop.is_set() or not self._trainer_running(name)
            if path.exists():
                with path.open("rb") as log:
                    log.seek(offsets.get(path, 0))
                    complete = log.read().rpartition(b"\n")[0]
                if complete:
                    offsets[path] = offsets.get(path, 0) + len(complete) + 1
                    for line in complete.decode(errors="replace").split("\n"):
                        write(f"[{name}] {line}")
            if done:
                return
            stop.wait(1.0)

    def _trainer_running(self, pod_name: str) -> bool:
        """Whether the pod's trainer container is running now."""
        try:
            pod = self.core.read_namespaced_pod(pod_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        for status in pod.status.container_statuses or []:
            if status.name == jobs.TRAINER_CONTAINER:
                return status.state is not None and status.state.running is not None
        return False


def run_job(api: JobClient, body: dict, write: Callable[[str], None] = print, timeout: float | None = None) -> dict:
    """Create `body` (replacing a finished job of its name), follow it to the end; return the final job.

    Raises JobRunningError when a job of that name has not finished, JobFailedError with the
    job's reason when it fails, TimeoutError after `timeout` seconds (default: the job's
    activeDeadlineSeconds plus ten minutes for scheduling and image pulls).
    """
    name = body["metadata"]["name"]
    existing = api.get(name)
    action = jobs.existing_job_action(existing)
    if action is jobs.Action.REFUSE:
        raise jobs.JobRunningError(jobs.refusal_message(existing))
    if action is jobs.Action.REPLACE:
        write(f"replacing finished PyTorchJob {name} ({jobs.outcome(existing).condition})")
        api.delete_and_wait(name)
    api.create(body)
    write(f"created PyTorchJob {name} in {api.namespace}")
    if timeout is None:
        timeout = body["spec"].get("runPolicy", {}).get("activeDeadlineSeconds", 7200) + 600
    stop = threading.Event()
    logs = threading.Thread(target=api.stream_master_logs, args=(name, stop, write), daemon=True)
    logs.start()
    deadline = time.monotonic() + timeout
    last_condition = None
    try:
        while True:
            current = api.get(name)
            if current is None:
                raise jobs.JobFailedError(f"PyTorchJob {name} was deleted while the step followed it")
            state = jobs.check_finished(current)
            if state.condition != last_condition:
                write(f"PyTorchJob {name}: {state.condition} {state.reason} {state.message}".rstrip())
                last_condition = state.condition
            if state.finished:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"PyTorchJob {name} did not finish within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
    finally:
        stop.set()
        # The log stream ends when the Master's container exits; give it a moment to print the last lines.
        logs.join(timeout=30)
