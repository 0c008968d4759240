"""`make demo`: the overlay's manifests on the local control plane, run by the real operators and the local node.

In order: render the overlay; seed MNIST into the claim's folder and decide whether to
train (a published model is kept unless RETRAIN); start the control plane (built on the
first run) and the node; apply every object, as `kubectl apply -k` would; then wait as a
user would with kubectl: the training job until the operator reports it Succeeded (or
Failed), the model server and the frontend until their Deployments are available; send
one drawn digit through the frontend; print READY. Ctrl-C, SIGTERM or SIGHUP stop the
node (every container, SIGTERM then SIGKILL) and the control plane; a SIGKILL of this
process stops them too (each runs under a keeper).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from local_cluster.api import Api, ApiError
from local_cluster.control_plane import ClusterError, ControlPlane
from local_cluster.node.errors import RefusedError, WorkloadFailedError
from local_cluster.node.podspec import port_is_free
from local_cluster.node.render import Rendering, render_overlay
from local_cluster.node.supervisor import Console, Process, RunInProgressError, Supervisor, command_line

REPO = Path(__file__).resolve().parent.parent
STATE_FILE = "run_local.json"
MAX_GRACE_SECONDS = 15.0
BIND_ADDRESSES = ("127.0.0.1", "0.0.0.0")
# SIGINT too: a shell that starts the demo in the background (`make demo &` in a script) ignores SIGINT
# for it, and Ctrl-C or a kill -INT must still stop it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MNIST_FILES = ("-ubyte", "-ubyte.gz")
TRAINING_KINDS = ("PyTorchJob", "TrainJob")
# What the demo waits for before READY; Deployment covers the frontend and TensorBoard.
SERVING_KINDS = ("SeldonDeployment", "InferenceService", "Deployment")
# Served next to the overlay's workloads, over the trainer's event files on the claim.
TENSORBOARD_COMPONENT = REPO / "components" / "tensorboard"
TENSORBOARD = "mnist-tensorboard"
# A container that cannot be configured (a path under no mount, a Service that never appears) stays so.
CONFIG_ERROR_GRACE_S = 10.0
POLL_S = 0.5


@dataclass
class Settings:
    """What the user chooses (flags or environment variables)."""

    overlay: Path
    demo_dir: Path
    crds_dir: Path
    mnist_dir: Path | None = None
    frontend_port: int = 8080
    model_port: int = 9000
    tensorboard_port: int = 6006
    retrain: bool = False
    exit_when_ready: bool = False
    ready_timeout: float = 300.0
    bind_address: str = "127.0.0.1"
    backoff_seconds: float = 10.0


@dataclass
class Training:
    """The training workload and the local folders its trainer writes."""

    obj: dict
    data_dir: Path | None
    model_root: Path | None
    checkpoint_dir: Path | None

    @property
    def name(self) -> str:
        return f"{self.obj['kind']}/{self.obj['metadata']['name']}"


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to `flag` as `--flag value` or `--flag=value`, or None."""
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def trainer_pod_spec(job: dict) -> dict | None:
    """The pod spec that runs the trainer: the PyTorchJob's Master, or the TrainJob's trainer node."""
    if job["kind"] == "PyTorchJob":
        specs = job["spec"].get("pytorchReplicaSpecs", {})
        master = specs.get("Master") or specs.get("Worker") or {}
        return master.get("template", {}).get("spec")
    for patch in job["spec"].get("runtimePatches", []) or []:
        for rjob in (patch.get("trainingRuntimeSpec", {}).get("template", {}).get("spec", {}) or {}).get(
            "replicatedJobs", []
        ):
            spec = rjob.get("template", {}).get("spec", {}).get("template", {}).get("spec")
            if spec:
                return spec
    return None


def trainer_args(job: dict) -> list[str]:
    """The trainer's command line as the manifest gives it."""
    if job["kind"] == "TrainJob":
        trainer = job["spec"].get("trainer", {})
        return [*trainer.get("command", []), *trainer.get("args", [])]
    spec = trainer_pod_spec(job) or {}
    container = next(iter(spec.get("containers", [])), {})
    return [*container.get("command", []), *container.get("args", [])]


def claim_path(spec: dict | None, path: str | None, volumes_dir: Path) -> Path | None:
    """The local folder of an in-container path under one of the pod's claim mounts, or None."""
    if not spec or not path:
        return None
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    for container in spec.get("containers", []):
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
            root = mount["mountPath"].rstrip("/")
            if mount["name"] in claims and (path == root or path.startswith(root + "/")):
                local = volumes_dir / claims[mount["name"]] / mount.get("subPath", "")
                return Path(str(local).rstrip("/") + path[len(root) :])
    return None


def training_of(rendering: Rendering, volumes_dir: Path) -> Training | None:
    """The rendering's training workload, if it has one (one at most)."""
    jobs = [d for d in rendering.documents if d["kind"] in TRAINING_KINDS]
    if len(jobs) > 1:
        raise RefusedError("rendering", f"{len(jobs)} training workloads: the demo runs one")
    if not jobs:
        return None
    job = jobs[0]
    spec, argv = trainer_pod_spec(job), trainer_args(job)
    return Training(
        job,
        *(
            claim_path(spec, flag_value(argv, flag), volumes_dir)
            for flag in ("--data-dir", "--model-root", "--checkpoint-dir")
        ),
    )


def seed_mnist(source: Path, target: Path, console: Console) -> None:
    """Copy MNIST IDX files from `source` (or its MNIST/raw) into the trainer's data folder, once."""
    files = [p for p in [*source.glob("*"), *source.glob("MNIST/raw/*")] if p.name.endswith(MNIST_FILES)]
    if not files:
        raise RefusedError("MNIST_DIR", f"{source} holds no MNIST IDX files (*-ubyte or *-ubyte.gz)")
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for path in files:
        dest = target / path.name
        if not dest.exists() or dest.stat().st_size != path.stat().st_size:
            shutil.copyfile(path, dest)
            copied += 1
    console.say(f"MNIST files from {source}: {copied} copied into {target}, {len(files) - copied} already there")


def prepare_training(training: Training | None, settings: Settings, console: Console) -> bool:
    """Seed data and honour RETRAIN; return whether the training workload is applied."""
    if training is None:
        return False
    if settings.mnist_dir is not None:
        if training.data_dir is None:
            console.say(f"{training.name}: the trainer has no --data-dir on a claim, so MNIST_DIR is not used")
        elif not settings.mnist_dir.is_dir():
            console.say(f"MNIST_DIR {settings.mnist_dir} does not exist: the trainer will download MNIST")
        else:
            seed_mnist(settings.mnist_dir, training.data_dir, console)
    latest = training.model_root / "LATEST" if training.model_root else None
    if latest is not None and latest.exists() and not settings.retrain:
        console.say(
            f"{training.name}: not applied, {latest} names {latest.read_text().strip()} (RETRAIN=1 trains again)"
        )
        return False
    if settings.retrain and training.checkpoint_dir is not None and training.checkpoint_dir.exists():
        shutil.rmtree(training.checkpoint_dir)
        console.say(f"RETRAIN: removed the checkpoints in {training.checkpoint_dir}")
    return True


def stroke_png() -> bytes:
    """A 28x28 grayscale PNG of a vertical stroke (a drawn "1"), white on black like the canvas sends."""
    rows = [bytes(255 if 12 <= x <= 15 and 4 <= y <= 23 else 0 for x in range(28)) for y in range(28)]
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def predict_through_frontend(port: int, where: str, timeout: float = 30.0) -> dict:
    """POST a drawn digit to the frontend's /api/predict; raise WorkloadFailedError unless ten probabilities return."""
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(stroke_png()).decode()}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/predict", data=body, headers={"Content-Type": "application/json"}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            if exc.code == 503 and time.monotonic() < deadline:
                time.sleep(1)
                continue
            raise WorkloadFailedError(where, f"POST /api/predict answered HTTP {exc.code}: {text}") from None
        except OSError as exc:
            if time.monotonic() > deadline:
                raise WorkloadFailedError(where, f"POST /api/predict failed: {exc}") from None
            time.sleep(0.5)
    probabilities = answer.get("probabilities") if isinstance(answer, dict) else None
    if not isinstance(probabilities, list) or len(probabilities) != 10:
        raise WorkloadFailedError(where, f"POST /api/predict did not return ten probabilities: {answer}")
    return answer


def with_tensorboard(overlay: Path, folder: Path) -> Path:
    """A kustomization in `folder`: the overlay plus components/tensorboard, as a user would add it."""
    folder.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay.resolve(), folder)],
        "components": [os.path.relpath(TENSORBOARD_COMPONENT, folder)],
    }
    (folder / "kustomization.yaml").write_text(json.dumps(kustomization, indent=1))
    return folder


def render(settings: Settings, console: Console) -> Rendering:
    """The overlay's objects, with TensorBoard added unless the overlay has it already."""
    console.say(f"rendering {settings.overlay} with kubectl kustomize")
    rendering = Rendering.from_yaml(render_overlay(settings.overlay))
    if rendering.get("Deployment", TENSORBOARD) is None:
        console.say(f"adding {TENSORBOARD_COMPONENT.relative_to(REPO)} (TensorBoard over the trainer's event files)")
        rendering = Rendering.from_yaml(
            render_overlay(with_tensorboard(settings.overlay, settings.demo_dir / "overlay"))
        )
    return rendering


def port_owner(port: int) -> str | None:
    """Which process listens on TCP `port`, as "pid N (command)", from /proc (Linux); None if unknown."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").glob("[0-9]*") if inodes else ():
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return f"pid {entry.name} ({command_line(int(entry.name))})"
        except OSError:
            continue
    return None


def ports_in_use(settings: Settings, console: Console) -> bool:
    """Say which of FRONTEND_PORT and MODEL_PORT is taken, and by whom."""
    busy = False
    for port, what in (
        (settings.frontend_port, "FRONTEND_PORT"),
        (settings.model_port, "MODEL_PORT"),
        (settings.tensorboard_port, "TENSORBOARD_PORT"),
    ):
        if not port_is_free(port):
            owner = port_owner(port)
            console.say(
                f"port {port} is in use{f' by {owner}' if owner else ''}: stop it, or choose another port with "
                f"{what}=<port>"
            )
            busy = True
    return busy


@dataclass
class NodeProcess:
    """The local node as a process of the demo (a ProcessSpec)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    prefix: str = "node"
    grace_seconds: float = MAX_GRACE_SECONDS + 5


class RawConsole(Console):
    """The node prefixes its own lines (`[pod/container] ...`): pass them through as they are."""

    def line(self, prefix: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"{text}\n")
            self.stream.flush()


def node_process(settings: Settings, kubeconfig: Path) -> NodeProcess:
    """The command line of the node for this demo."""
    argv = [
        sys.executable,
        "-m",
        "local_cluster.node",
        f"--kubeconfig={kubeconfig}",
        f"--state-dir={settings.demo_dir / 'node'}",
        f"--volumes-dir={settings.demo_dir / 'pvc'}",
        f"--bind-address={settings.bind_address}",
        f"--backoff-seconds={settings.backoff_seconds}",
        f"--publish=frontend={settings.frontend_port}",
        f"--publish=serving={settings.model_port}",
        f"--publish=kserve={settings.model_port}",
        f"--publish=tensorboard={settings.tensorboard_port}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return NodeProcess(argv, env, REPO)


class Watch:
    """What the demo waits for, read from the API server as `kubectl get` would show it."""

    def __init__(self, api: Api, namespace: str, node_dir: Path):
        self.api = api
        self.namespace = namespace
        self.node_dir = node_dir
        self.config_errors: dict[str, float] = {}

    def pods(self) -> list[dict]:
        return self.api.list("Pod", self.namespace)

    def check_pods(self) -> None:
        """Raise WorkloadFailedError for a container that cannot be configured (after a short grace)."""
        now = time.monotonic()
        for pod in self.pods():
            for status in pod.get("status", {}).get("initContainerStatuses", []) + pod.get("status", {}).get(
                "containerStatuses", []
            ):
                waiting = status.get("state", {}).get("waiting", {})
                key = f"{pod['metadata']['uid']}/{status['name']}"
                if waiting.get("reason") == "CreateContainerConfigError":
                    first = self.config_errors.setdefault(key, now)
                    if now - first > CONFIG_ERROR_GRACE_S:
                        message = waiting.get("message", "")
                        raise WorkloadFailedError(
                            message.split(": ", 1)[0] or pod["metadata"]["name"], message.split(": ", 1)[-1]
                        )
                else:
                    self.config_errors.pop(key, None)

    def job_state(self, training: Training) -> tuple[str, str] | None:
        """("Succeeded"|"Failed"|"Complete", message) once the operator says the job ended, else None."""
        kind, name = training.obj["kind"], training.obj["metadata"]["name"]
        path = (
            f"/apis/kubeflow.org/v1/namespaces/{self.namespace}/pytorchjobs/{name}"
            if kind == "PyTorchJob"
            else f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{self.namespace}/trainjobs/{name}"
        )
        try:
            job = self.api.request("GET", path)
        except ApiError as err:
            return ("Deleted", "") if err.status == 404 else None
        for condition in job.get("status", {}).get("conditions", []) or []:
            if condition["type"] in ("Succeeded", "Complete", "Failed") and condition["status"] == "True":
                return condition["type"], condition.get("message", "")
        return None

    def wait_pods_gone(self, training: Training, timeout: float) -> bool:
        """Wait until no pod of the training workload is left; False if some remain after `timeout`."""
        name = training.obj["metadata"]["name"]
        label = (
            "training.kubeflow.org/job-name"
            if training.obj["kind"] == "PyTorchJob"
            else "jobset.sigs.k8s.io/jobset-name"
        )
        deadline = time.monotonic() + timeout
        while self.api.list("Pod", self.namespace, labelSelector=f"{label}={name}"):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def last_lines(self, job_name: str, lines: int = 20) -> list[str]:
        """The last lines of the newest log of the job's first pod (the Master, or node 0)."""
        logs = sorted(
            (self.node_dir / "logs" / "pods").glob(f"{self.namespace}_{job_name}-*/*.log"),
            key=lambda p: p.stat().st_mtime,
        )
        masters = [p for p in logs if "master" in p.parent.name or "-node-0-0" in p.parent.name] or logs
        if not masters:
            return []
        return masters[-1].read_text(errors="replace").splitlines()[-lines:]

    @staticmethod
    def serving_workloads(rendering: Rendering) -> list[str]:
        """Every workload that `serving_ready` waits for, as "Kind/name"."""
        return [f"{kind}/{name}" for kind, name in _serving_objects(rendering)]

    def serving_ready(self, rendering: Rendering) -> list[str]:
        """The serving workloads not yet available (SeldonDeployment, InferenceService, Deployments)."""
        return [f"{kind}/{name}" for kind, name in _serving_objects(rendering) if not self._available(kind, name)]

    def _available(self, kind: str, name: str) -> bool:
        if kind == "InferenceService":
            try:
                obj = self.api.request(
                    "GET", f"/apis/serving.kserve.io/v1beta1/namespaces/{self.namespace}/inferenceservices/{name}"
                )
            except ApiError:
                obj = {}
            conditions = obj.get("status", {}).get("conditions", []) or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        obj = self.api.get(kind, self.namespace, name) or {}
        if kind == "SeldonDeployment":
            return obj.get("status", {}).get("state") == "Available"
        wanted = obj.get("spec", {}).get("replicas", 1)
        return obj.get("status", {}).get("availableReplicas", 0) >= wanted


def _serving_objects(rendering: Rendering) -> list[tuple[str, str]]:
    """(kind, name) of every serving workload in `rendering`, in the order they are reported."""
    return [(kind, obj["metadata"]["name"]) for kind in SERVING_KINDS for obj in rendering.of_kind(kind)]


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(settings: Settings, console: Console) -> int:
    """The whole demo; 0 ready (or stopped by the user), 1 a workload failed, 2 refused, 130 interrupted."""
    started = time.monotonic()
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in STOP_SIGNALS}
    supervisor = Supervisor(RawConsole(), settings.demo_dir / STATE_FILE, MAX_GRACE_SECONDS + 5)
    try:
        for line in supervisor.open():
            console.say(f"stopped a process that a run which did not stop cleanly left behind: {line}")
    except RunInProgressError as busy:
        console.say(f"{busy}: stop it first, or give this run another DEMO_DIR")
        _restore(previous)
        return 1
    except KeyboardInterrupt:
        _restore(previous)
        return 130
    cluster = None
    try:
        if settings.bind_address not in BIND_ADDRESSES:
            raise RefusedError(
                "DEMO_BIND_ADDRESS",
                f"{settings.bind_address!r} is not one of {', '.join(BIND_ADDRESSES)} "
                "(loopback only, or every interface)",
            )
        if ports_in_use(settings, console):
            return 1
        rendering = render(settings, console)
        training = training_of(rendering, settings.demo_dir / "pvc")
        train = prepare_training(training, settings, console)
        objects = [d for d in rendering.documents if train or d["kind"] not in TRAINING_KINDS]
        cluster = ControlPlane(
            settings.demo_dir / "cluster",
            settings.crds_dir,
            log=console.say,
            kubeconfig=settings.demo_dir / "kubeconfig",
            tied_to_caller=True,
            trainer_v2=any(d["kind"] == "TrainJob" for d in rendering.documents),
            kserve=any(d["kind"] == "InferenceService" for d in rendering.documents),
        )
        cluster.start_core()
        console.say(
            f"kubeconfig: {cluster.kubeconfig} (KUBECONFIG={cluster.kubeconfig} kubectl get pytorchjob,sdep,pods)"
        )
        node: Process = supervisor.start(node_process(settings, cluster.kubeconfig))
        # The pods of plain objects start while the operators do; the operators' own kinds wait for their webhooks.
        later = [o for o in objects if cluster.needs_operators(o)]
        now = [o for o in objects if o not in later]
        console.say(f"applying {len(now)} objects of {settings.overlay}")
        cluster.apply_objects(now)
        cluster.start_operators()
        if later:
            names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in later)
            console.say(f"applying {names}, now that the operators are ready")
            cluster.apply_objects(later)
        return _follow(settings, console, rendering, training if train else None, cluster, node, started)
    except RefusedError as refusal:
        console.say(f"REFUSED {refusal}")
        return 2
    except WorkloadFailedError as failure:
        _report(failure, console)
        return 1
    except ClusterError as err:
        console.say(f"FAILED local cluster: {err}")
        return 1
    except KeyboardInterrupt:
        console.say("stopping every process")
        return 130
    finally:
        supervisor.close()
        if cluster is not None:
            cluster.down(quiet=True)
        _restore(previous)


def _follow(settings, console, rendering, training, cluster, node, run_started: float) -> int:
    api = Api(cluster.kubeconfig)
    watch = Watch(api, rendering.namespace(), settings.demo_dir / "node")

    def alive() -> None:
        if node.poll() is not None:
            raise WorkloadFailedError("local node", "stopped", node.last_lines())
        watch.check_pods()

    if training is not None:
        console.say(f"{training.name}: waiting for the operator to report it finished")
        while (state := watch.job_state(training)) is None:
            alive()
            time.sleep(POLL_S)
        kind, message = state
        if kind == "Deleted":
            # Its pods go by garbage collection and the node's graceful stop, not by this run ending.
            gone = watch.wait_pods_gone(training, timeout=90)
            raise WorkloadFailedError(
                training.name, "deleted before it finished" + ("; its pods are gone" if gone else "; its pods remain")
            )
        if kind == "Failed":
            raise WorkloadFailedError(
                training.name, f"Failed: {message}", watch.last_lines(training.obj["metadata"]["name"])
            )
        console.say(f"{training.name}: {kind}")
    started = time.monotonic()
    deadline = started + settings.ready_timeout
    workloads = watch.serving_workloads(rendering)
    reported: set[str] = set()
    while True:
        waiting = watch.serving_ready(rendering)
        for ready in [w for w in workloads if w not in waiting and w not in reported]:
            # Since the run began: their pods may have started before the training job was applied.
            console.say(f"{ready}: available after {time.monotonic() - run_started:.0f} s")
            reported.add(ready)
        if not waiting:
            break
        alive()
        if time.monotonic() > deadline:
            raise WorkloadFailedError(", ".join(waiting), f"not available after {settings.ready_timeout:.0f} s")
        time.sleep(POLL_S)
    answer = predict_through_frontend(settings.frontend_port, "Deployment/mnist-frontend")
    console.say(
        f"check: a drawn 1 sent through the frontend came back as {answer.get('prediction')} "
        f"(model {answer.get('model_version')})"
    )
    if rendering.get("Deployment", TENSORBOARD) is not None:
        # localhost: TensorBoard binds the IPv6 loopback address (its --bind_all asks for the IPv6 wildcard).
        console.say(f"TensorBoard: http://localhost:{settings.tensorboard_port}/")
    console.say(f"up in {time.monotonic() - run_started:.1f} s")
    console.say(f"READY: open http://127.0.0.1:{settings.frontend_port}/ (Ctrl-C stops everything)")
    if settings.exit_when_ready:
        return 0
    while True:
        alive()
        time.sleep(POLL_S)


def _report(failure: WorkloadFailedError, console: Console) -> None:
    console.say(f"FAILED {failure}")
    if failure.last_lines:
        console.say("last lines:")
        for line in failure.last_lines:
            console.say(f"  | {line}")


def _restore(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
