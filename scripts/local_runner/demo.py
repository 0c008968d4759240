"""The whole local run: plan every workload from the rendering, then train, serve and open the frontend in turn.

A cluster applies everything at once and each workload waits for what it needs; here
the same end state is reached in order: the PyTorchJob runs to Succeeded (skipped when
a model is already published), then the model server until its readiness probe passes,
then the frontend until its probe passes and one prediction has gone through it.
"""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from local_runner import deployment, pytorchjob, seldon
from local_runner.components import component_for_image, shell_words
from local_runner.errors import RefusedError, WorkloadFailedError
from local_runner.podspec import PASSTHROUGH_ENV, ContainerPlan, Probe, port_is_free
from local_runner.render import Rendering
from local_runner.supervisor import Console, Process, RunInProgressError, Supervisor, command_line, describe_exit
from local_runner.translate import HostMap

# Objects that only shape how a cluster schedules, isolates or authorises pods: they
# change nothing a process computes, so they are listed as not enforced, not refused.
CLUSTER_ONLY_KINDS = {
    "NetworkPolicy",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "LimitRange",
    "ResourceQuota",
    "Namespace",
    "PriorityClass",
}
RUN_KINDS = {"PersistentVolumeClaim", "PyTorchJob", "SeldonDeployment", "Deployment", "Service", "ConfigMap", "Secret"}
MNIST_FILES = ("-ubyte", "-ubyte.gz")
# Where a run writes down its processes, in DEMO_DIR, for the next run to clear after a crash.
STATE_FILE = "run_local.json"
MAX_GRACE_SECONDS = 10.0
# First on every process's PYTHONPATH: its sitecustomize makes servers that bind every interface in their code
# bind DEMO_BIND_ADDRESS instead.
BIND_ADDRESS_SHIM = Path(__file__).resolve().parent / "bind_address"
BIND_ADDRESSES = ("127.0.0.1", "0.0.0.0")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class Settings:
    """What the user chooses (flags or environment variables)."""

    overlay: Path
    demo_dir: Path
    mnist_dir: Path | None = None
    frontend_port: int = 8080
    model_port: int = 9000
    retrain: bool = False
    exit_when_ready: bool = False
    ready_timeout: float = 120.0
    bind_address: str = "127.0.0.1"


@dataclass
class DemoPlan:
    """Every process to run, in order, and the paths the run prepares on the local volume."""

    job: pytorchjob.JobPlan | None = None
    model: ContainerPlan | None = None
    servers: list[ContainerPlan] = field(default_factory=list)
    frontend: ContainerPlan | None = None
    frontend_port: int | None = None
    notes: list[str] = field(default_factory=list)
    model_root: Path | None = None
    checkpoint_dir: Path | None = None
    data_dir: Path | None = None
    # The pods' emptyDirs, removed when the run ends.
    scratch: Path | None = None

    def job_plans(self) -> list[ContainerPlan]:
        """The job's replicas' processes (none without a job)."""
        return [r.plan for r in self.job.replicas] if self.job else []


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to `flag` as `--flag value` or `--flag=value`, or None."""
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _one(rendering: Rendering, kind: str) -> dict | None:
    objects = rendering.of_kind(kind)
    if len(objects) > 1:
        names = ", ".join(o["metadata"]["name"] for o in objects)
        raise RefusedError(kind, f"{len(objects)} objects ({names}): the local run emulates one")
    return objects[0] if objects else None


def build_plan(rendering: Rendering, settings: Settings) -> DemoPlan:
    """Check every object of the rendering and plan the processes; raise RefusedError on the first problem."""
    plan = DemoPlan()
    for doc in rendering.documents:
        kind, name = doc["kind"], doc["metadata"].get("name")
        if kind in CLUSTER_ONLY_KINDS:
            plan.notes.append(f"{kind}/{name}: not enforced locally (it only matters on a cluster)")
        elif kind not in RUN_KINDS:
            raise RefusedError(f"{kind}/{name}", f"kind {kind} is not emulated by the local runner")

    if settings.bind_address not in BIND_ADDRESSES:
        raise RefusedError(
            "DEMO_BIND_ADDRESS",
            f"{settings.bind_address!r} is not one of {', '.join(BIND_ADDRESSES)} (loopback only, or every interface)",
        )
    plan.scratch = Path(tempfile.mkdtemp(prefix="run_local-"))
    try:
        _plan_workloads(rendering, settings, plan)
    except BaseException:
        remove_scratch(plan)
        raise
    trainers = plan.job_plans()
    for process in all_plans(plan):
        bind_locally(process, settings.bind_address, trainer=any(process is t for t in trainers))
    return plan


def loopback_interface() -> str:
    """The name of the loopback network interface (lo on Linux, lo0 on macOS)."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return names[0] if names else "lo"


def bind_locally(process: ContainerPlan, address: str, trainer: bool) -> None:
    """Make the process's servers listen on `address`, whatever address their code or arguments name.

    Python servers bind through the shim in BIND_ADDRESS_SHIM; gloo (the trainer's
    collectives) listens on the interface GLOO_SOCKET_IFNAME names, loopback here, since
    every rank runs on this machine.
    """
    process.env["DEMO_BIND_ADDRESS"] = address
    process.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BIND_ADDRESS_SHIM), process.env.get("PYTHONPATH")]))
    if trainer:
        process.env.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())


def all_plans(plan: DemoPlan) -> list[ContainerPlan]:
    """Every process of the run, in the order they start."""
    return plan.job_plans() + ([plan.model] if plan.model else []) + plan.servers


def _plan_workloads(rendering: Rendering, settings: Settings, plan: DemoPlan) -> None:
    claims = {}
    for pvc in rendering.of_kind("PersistentVolumeClaim"):
        claims[pvc["metadata"]["name"]] = settings.demo_dir / "pvc" / pvc["metadata"]["name"]
        claims[pvc["metadata"]["name"]].mkdir(parents=True, exist_ok=True)
        plan.notes.append(f"PersistentVolumeClaim/{pvc['metadata']['name']} -> {claims[pvc['metadata']['name']]}")

    hosts = HostMap(rendering.namespace())
    job = _one(rendering, "PyTorchJob")
    sdep = _one(rendering, "SeldonDeployment")
    master_port = pytorchjob.register_services(job, hosts) if job else None
    model_ports = seldon.register_services(sdep, hosts, settings.model_port) if sdep else None
    deployment_ports = {
        d["metadata"]["name"]: deployment.deployment_local_ports(d, settings.frontend_port)
        for d in rendering.of_kind("Deployment")
    }
    deployment.register_services(rendering, hosts, deployment_ports)
    for service, ports in hosts.services.items():
        mapped = ", ".join(f"{p} -> 127.0.0.1:{local}" for p, local in sorted(ports.items()))
        plan.notes.append(f"Service {service}: {mapped or 'no port of a local process'}")

    if job:
        plan.job = pytorchjob.plan_job(job, rendering, plan.scratch, claims, hosts, master_port)
        argv = plan.job.master.plan.argv
        for attr, flag in (
            ("model_root", "--model-root"),
            ("checkpoint_dir", "--checkpoint-dir"),
            ("data_dir", "--data-dir"),
        ):
            value = flag_value(argv, flag)
            setattr(plan, attr, Path(value) if value else None)
    if sdep:
        plan.model = seldon.plan_model(sdep, rendering, plan.scratch, claims, hosts, model_ports)
    for d in rendering.of_kind("Deployment"):
        server = deployment.plan_deployment(
            d, rendering, plan.scratch, claims, hosts, deployment_ports[d["metadata"]["name"]]
        )
        if d["spec"].get("replicas", 1) != 1:
            plan.notes.append(f"Deployment/{d['metadata']['name']}: replicas {d['spec']['replicas']} run as 1 process")
        if component_for_image(deployment.the_container(d)["image"], "").name == "frontend":
            plan.frontend, plan.frontend_port = server, settings.frontend_port
        plan.servers.append(server)


def describe(plan: DemoPlan, console: Console) -> None:
    """Print what would run: each process's command, working directory and environment."""
    for note in plan.notes:
        console.say(note)
    for p in all_plans(plan):
        console.say(f"{p.workload} {p.label} [{p.prefix}]")
        console.say(f"  command: {shell_words(p.argv)}")
        console.say(f"  cwd: {p.cwd}")
        for name, value in sorted(p.env.items()):
            if name not in PASSTHROUGH_ENV or value != os.environ.get(name):
                console.say(f"  env {name}={value}")
        if p.readiness:
            console.say(
                f"  readiness: {p.readiness.kind} 127.0.0.1:{p.readiness.port}"
                + (p.readiness.path if p.readiness.kind == "http" else "")
            )


def remove_scratch(plan: DemoPlan) -> None:
    """Delete the pods' emptyDirs, as a cluster does when the pods go."""
    if plan.scratch is not None:
        shutil.rmtree(plan.scratch, ignore_errors=True)


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


def probe_ok(probe: Probe) -> bool:
    """One readiness check, as the kubelet would make it (2xx/3xx for http, a connection for tcp)."""
    try:
        if probe.kind == "http":
            with urllib.request.urlopen(f"http://127.0.0.1:{probe.port}{probe.path}", timeout=2) as response:
                return 200 <= response.status < 400
        with socket.create_connection(("127.0.0.1", probe.port), timeout=2):
            return True
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(process: Process, timeout: float, console: Console) -> None:
    """Wait for the process's readiness probe; raise WorkloadFailedError if it exits or times out first."""
    plan = process.plan
    probe = plan.readiness or (Probe("tcp", next(iter(plan.ports.values()))) if plan.ports else None)
    deadline = time.monotonic() + timeout
    while probe is not None and not probe_ok(probe):
        code = process.poll()
        if code is not None:
            raise WorkloadFailedError(
                f"{plan.workload} {plan.label}", f"{describe_exit(code)} before it was ready", process.last_lines()
            )
        if time.monotonic() > deadline:
            target = (
                f"GET 127.0.0.1:{probe.port}{probe.path}" if probe.kind == "http" else f"TCP 127.0.0.1:{probe.port}"
            )
            raise WorkloadFailedError(
                f"{plan.workload} {plan.label}", f"not ready after {timeout:.0f} s ({target})", process.last_lines()
            )
        time.sleep(0.3)
    console.say(f"{plan.workload}: ready")


def stroke_png() -> bytes:
    """A 28x28 grayscale PNG of a vertical stroke (a drawn "1"), white on black like the canvas sends."""
    rows = [bytes(255 if 12 <= x <= 15 and 4 <= y <= 23 else 0 for x in range(28)) for y in range(28)]
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def predict_through_frontend(port: int, frontend: Process, timeout: float = 30.0) -> dict:
    """POST a drawn digit to the frontend's /api/predict; raise WorkloadFailedError unless ten probabilities return."""
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(stroke_png()).decode()}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/predict", data=body, headers={"Content-Type": "application/json"}
    )
    where = f"{frontend.plan.workload} {frontend.plan.label}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            raise WorkloadFailedError(
                where, f"POST /api/predict answered HTTP {exc.code}: {text}", frontend.last_lines()
            ) from None
        except OSError as exc:
            if time.monotonic() > deadline:
                raise WorkloadFailedError(where, f"POST /api/predict failed: {exc}", frontend.last_lines()) from None
            time.sleep(0.5)
    probabilities = answer.get("probabilities") if isinstance(answer, dict) else None
    if not isinstance(probabilities, list) or len(probabilities) != 10:
        raise WorkloadFailedError(
            where, f"POST /api/predict did not return ten probabilities: {answer}", frontend.last_lines()
        )
    return answer


def _prepare_training(plan: DemoPlan, settings: Settings, console: Console) -> bool:
    """Seed data, honour RETRAIN; return whether the job must run."""
    job = plan.job
    if job is None:
        return False
    if settings.mnist_dir is not None:
        if plan.data_dir is None:
            console.say(f"{job.workload}: the Master has no --data-dir, so MNIST_DIR is not used")
        elif not settings.mnist_dir.is_dir():
            console.say(f"MNIST_DIR {settings.mnist_dir} does not exist: the trainer will download MNIST")
        else:
            seed_mnist(settings.mnist_dir, plan.data_dir, console)
    latest = plan.model_root / "LATEST" if plan.model_root else None
    if latest is not None and latest.exists() and not settings.retrain:
        console.say(f"{job.workload}: skipped, {latest} names {latest.read_text().strip()} (RETRAIN=1 trains again)")
        return False
    if settings.retrain and plan.checkpoint_dir is not None and plan.checkpoint_dir.exists():
        shutil.rmtree(plan.checkpoint_dir)
        console.say(f"RETRAIN: removed the checkpoints in {plan.checkpoint_dir}")
    return True


def _report(failure: WorkloadFailedError, console: Console) -> None:
    console.say(f"FAILED {failure}")
    if failure.last_lines:
        console.say("last lines:")
        for line in failure.last_lines:
            console.say(f"  | {line}")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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


def _ports_in_use(settings: Settings, console: Console) -> bool:
    busy = False
    for port, what in ((settings.frontend_port, "FRONTEND_PORT"), (settings.model_port, "MODEL_PORT")):
        if not port_is_free(port):
            owner = port_owner(port)
            console.say(
                f"port {port} is in use{f' by {owner}' if owner else ''}: stop it, or choose another port with "
                f"{what}=<port>"
            )
            busy = True
    return busy


def run(plan: DemoPlan, settings: Settings, console: Console) -> int:
    """Run the plan; return the exit code (0 ready/stopped by the user, 1 a workload failed, 130 interrupted).

    SIGINT, SIGTERM and SIGHUP (the terminal closed) stop every process. Processes are
    also stopped when this process dies without stopping them (see supervisor.py), and
    what a crashed run left is cleared from DEMO_DIR's state file at the next start.
    """
    for note in plan.notes:
        console.say(note)
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in STOP_SIGNALS}
    supervisor = Supervisor(console, settings.demo_dir / STATE_FILE, MAX_GRACE_SECONDS)
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
    try:
        return _run(plan, settings, console, supervisor)
    finally:
        _restore(previous)


def _restore(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _run(plan: DemoPlan, settings: Settings, console: Console, supervisor: Supervisor) -> int:
    servers: list[Process] = []
    trained = False
    try:
        if _ports_in_use(settings, console):
            return 1
        if _prepare_training(plan, settings, console):
            trained = True
            for replica in plan.job.replicas:
                console.say(f"{plan.job.workload} {replica.name}: {shell_words(replica.plan.argv)}")
            pytorchjob.run_job(plan.job, supervisor, console)
        for server_plan in ([plan.model] if plan.model else []) + plan.servers:
            process = supervisor.start(server_plan)
            console.say(f"{server_plan.workload}: pid {process.proc.pid}: {shell_words(server_plan.argv)}")
            servers.append(process)
            wait_ready(process, settings.ready_timeout, console)
        if plan.frontend_port is not None:
            frontend = next(p for p in servers if p.plan is plan.frontend)
            answer = predict_through_frontend(plan.frontend_port, frontend)
            console.say(
                f"check: a drawn 1 sent through the frontend came back as {answer.get('prediction')} "
                f"(model {answer.get('model_version')})"
            )
            console.say(f"READY: open http://127.0.0.1:{plan.frontend_port}/ (Ctrl-C stops everything)")
        if settings.exit_when_ready:
            return 0
        while True:
            time.sleep(0.5)
            for process in servers:
                code = process.poll()
                if code is not None:
                    raise WorkloadFailedError(
                        f"{process.plan.workload} {process.plan.label}",
                        describe_exit(code),
                        process.last_lines(),
                    )
    except WorkloadFailedError as failure:
        _report(failure, console)
        if plan.job is not None and not trained:
            console.say(f"{plan.job.workload} did not run (a model was published before): RETRAIN=1 trains a new one")
        return 1
    except RefusedError as refusal:
        console.say(f"REFUSED {refusal}")
        return 2
    except KeyboardInterrupt:
        console.say("stopping every process")
        return 130
    finally:
        supervisor.close()
        remove_scratch(plan)
