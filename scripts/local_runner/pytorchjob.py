"""A PyTorchJob as local processes, with what the Training Operator (v1.9) adds and how it restarts replicas.

Environment, as the operator's `setPodEnv` injects it into every replica's containers:
PYTHONUNBUFFERED, MASTER_ADDR and PET_MASTER_ADDR (the Master's Service name
`<job>-master-0`, here 127.0.0.1), MASTER_PORT and PET_MASTER_PORT (the container port
named `pytorchjob-port`, default 23456), WORLD_SIZE (replicas x nprocPerNode), RANK (0
for the Master, i + 1 for Worker i), PET_NPROC_PER_NODE (`nprocPerNode`, default "auto"),
PET_NODE_RANK (= RANK) and PET_NNODES (replicas).

Init containers: the operator adds `init-pytorch` to every Worker (its image waits until the
Master's Service name resolves); here that name always resolves to 127.0.0.1, so the step is
checked against the host map instead of being run.

Lifecycle: the job succeeds when the Master exits 0; Workers still running then are left
alone, as the operator leaves them. A replica that fails is restarted under `OnFailure` (and
under `ExitCode` for exit codes >= 128). The operator fails the job as soon as the restart
counts of its pods add up to `runPolicy.backoffLimit` (core.PastBackoffLimit: restarts >=
limit), so the failure that would make that count is the last. `Never` fails at once.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from local_runner.components import component_for_image, image_defaults
from local_runner.errors import RefusedError, WorkloadFailedError
from local_runner.podspec import (
    ContainerPlan,
    PodContext,
    build_container_plan,
    free_port,
    port_is_free,
    prepare_volumes,
)
from local_runner.render import Rendering
from local_runner.supervisor import Console, Process, Supervisor, describe_exit
from local_runner.translate import HostMap

CONTAINER = "pytorch"
PORT_NAME = "pytorchjob-port"
DEFAULT_PORT = 23456
REPLICA_TYPES = ("Master", "Worker")
RESTART_DELAY_SECONDS = 1.0
INIT_CONTAINER = "init-pytorch"


@dataclass
class Replica:
    """One replica (pod) of the job: its type, index, restart policy and process plan."""

    rtype: str
    index: int
    restart_policy: str
    plan: ContainerPlan
    init_containers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.rtype}-{self.index}"


@dataclass
class JobPlan:
    """The job's replicas and the run policy the local run honours."""

    workload: str
    replicas: list[Replica]
    backoff_limit: int
    active_deadline_seconds: float | None

    @property
    def master(self) -> Replica:
        return self.replicas[0]


def _replica_specs(job: dict, workload: str) -> dict[str, dict]:
    specs = {}
    for key, spec in (job["spec"].get("pytorchReplicaSpecs") or {}).items():
        rtype = key.capitalize()
        if rtype not in REPLICA_TYPES:
            raise RefusedError(workload, f"replica type {key!r} is not emulated (Master and Worker are)")
        specs[rtype] = spec
    if "Master" not in specs:
        raise RefusedError(workload, "a PyTorchJob without a Master replica is not emulated")
    if int(specs["Master"].get("replicas", 1)) != 1:
        raise RefusedError(workload, "the Master must have exactly 1 replica (the operator refuses more)")
    return {rtype: specs[rtype] for rtype in REPLICA_TYPES if rtype in specs}


def _pytorch_container(template: dict, where: str) -> dict:
    spec = template.get("spec", {})
    if spec.get("initContainers"):
        raise RefusedError(where, "initContainers are not emulated")
    containers = spec.get("containers", [])
    if [c["name"] for c in containers] != [CONTAINER]:
        raise RefusedError(
            where,
            f"expected exactly one container named {CONTAINER!r} (the operator's), "
            f"got {[c['name'] for c in containers]}",
        )
    return containers[0]


def master_port(job: dict) -> int:
    """The port the operator puts in MASTER_PORT: the Master's container port named pytorchjob-port, else 23456."""
    spec = job["spec"]["pytorchReplicaSpecs"]
    master = next(v for k, v in spec.items() if k.capitalize() == "Master")
    for port in master["template"]["spec"]["containers"][0].get("ports", []):
        if port.get("name") == PORT_NAME:
            return int(port["containerPort"])
    return DEFAULT_PORT


def register_services(job: dict, hosts: HostMap) -> int:
    """Make each replica's Service (`<job>-master-0`, `<job>-worker-<i>`) resolve locally; return the master port."""
    name = job["metadata"]["name"]
    port = master_port(job)
    local = port if port_is_free(port) else free_port()
    for rtype, spec in _replica_specs(job, f"PyTorchJob/{name}").items():
        for index in range(int(spec.get("replicas", 1))):
            hosts.add(f"{name}-{rtype.lower()}-{index}", {port: local})
    return local


def operator_env(job: dict, rtype: str, index: int, local_master_port: int) -> list[tuple[str, str]]:
    """The variables the Training Operator appends to a replica's containers, in its order."""
    name = job["metadata"]["name"]
    specs = _replica_specs(job, f"PyTorchJob/{name}")
    replicas = sum(int(s.get("replicas", 1)) for s in specs.values())
    nproc = str(job["spec"].get("nprocPerNode", "auto"))
    world_size = replicas * (int(nproc) if nproc.isdigit() else 1)
    rank = index + 1 if rtype == "Worker" else index
    master = f"{name}-master-0"
    return [
        ("PYTHONUNBUFFERED", "1"),
        ("MASTER_PORT", str(local_master_port)),
        ("PET_MASTER_PORT", str(local_master_port)),
        ("MASTER_ADDR", master),
        ("PET_MASTER_ADDR", master),
        ("WORLD_SIZE", str(world_size)),
        ("RANK", str(rank)),
        ("PET_NODE_RANK", str(rank)),
        ("PET_NPROC_PER_NODE", nproc),
        ("PET_NNODES", str(replicas)),
    ]


def plan_job(
    job: dict, rendering: Rendering, scratch: Path, claims: dict[str, Path], hosts: HostMap, local_master_port: int
) -> JobPlan:
    """Plan every replica of the job; refuse what the local run cannot honour."""
    name = job["metadata"]["name"]
    workload = f"PyTorchJob/{name}"
    spec = job["spec"]
    if spec.get("elasticPolicy"):
        raise RefusedError(workload, "elasticPolicy (torchrun rendezvous with a changing world) is not emulated")
    run_policy = spec.get("runPolicy", {})
    if run_policy.get("backoffLimit") is None:
        raise RefusedError(
            workload,
            "runPolicy.backoffLimit is unset: a cluster would restart a failing replica forever; set a limit",
        )
    replicas = []
    for rtype, rspec in _replica_specs(job, workload).items():
        policy = rspec.get("restartPolicy", "OnFailure")
        if policy not in ("OnFailure", "Never", "ExitCode"):
            raise RefusedError(
                workload, f"{rtype} restartPolicy {policy} is not emulated (OnFailure, Never, ExitCode are)"
            )
        for index in range(int(rspec.get("replicas", 1))):
            where = f"{workload} {rtype}"
            template = rspec["template"]
            container = _pytorch_container(template, where)
            component = component_for_image(container["image"], where)
            prefix = f"{component.name}-{rtype.lower()}" + ("" if rtype == "Master" else f"-{index}")
            pod = PodContext(workload, f"{name}-{rtype.lower()}-{index}", rendering.namespace(), template, prefix)
            prepare_volumes(pod, scratch, rendering, claims)
            ports = {
                p["containerPort"]: local_master_port for p in container.get("ports", []) if p.get("name") == PORT_NAME
            }
            plan = build_container_plan(
                pod=pod,
                container=container,
                label=rtype if rtype == "Master" else f"Worker-{index}",
                prefix=prefix,
                component=component,
                image=image_defaults(component),
                injected=operator_env(job, rtype, index, local_master_port),
                ports=ports,
                hosts=hosts,
                rendering=rendering,
            )
            init = ()
            if rtype == "Worker":
                if hosts.service_of(f"{name}-master-0") is None:
                    raise RefusedError(where, f"{INIT_CONTAINER} would wait forever: {name}-master-0 does not resolve")
                init = (INIT_CONTAINER,)
            replicas.append(Replica(rtype, index, policy, plan, init))
    deadline = run_policy.get("activeDeadlineSeconds")
    return JobPlan(workload, replicas, int(run_policy["backoffLimit"]), float(deadline) if deadline else None)


def _restartable(replica: Replica, code: int) -> bool:
    if replica.restart_policy == "OnFailure":
        return True
    return replica.restart_policy == "ExitCode" and code >= 128


def run_job(plan: JobPlan, supervisor: Supervisor, console: Console) -> None:
    """Run the job to Succeeded (the Master exits 0); raise WorkloadFailedError when it fails."""
    processes = [supervisor.start(r.plan) for r in plan.replicas]
    restarts = 0
    started = time.monotonic()
    console.say(
        f"{plan.workload}: started {', '.join(r.name for r in plan.replicas)} (backoffLimit {plan.backoff_limit})"
    )
    while True:
        time.sleep(0.2)
        if plan.active_deadline_seconds and time.monotonic() - started > plan.active_deadline_seconds:
            _stop(processes)
            raise WorkloadFailedError(
                plan.workload, f"ran past activeDeadlineSeconds ({plan.active_deadline_seconds:.0f} s): job Failed"
            )
        if processes[0].poll() == 0:
            console.say(f"{plan.workload}: Master exited 0: job Succeeded")
            return
        for replica, process in zip(plan.replicas, processes, strict=True):
            code = process.poll()
            if code is None or code == 0:
                continue
            if _restartable(replica, code) and restarts + 1 < plan.backoff_limit:
                restarts += 1
                console.say(
                    f"{plan.workload}: {replica.name} {describe_exit(code)}; restart {restarts} of {plan.backoff_limit}"
                )
                time.sleep(RESTART_DELAY_SECONDS)
                process.start()
                continue
            lines = process.last_lines()
            _stop(processes)
            reason = (
                f"restartPolicy {replica.restart_policy}"
                if not _restartable(replica, code)
                else f"restart {restarts + 1} would reach backoffLimit {plan.backoff_limit}"
            )
            raise WorkloadFailedError(
                plan.workload, f"{replica.name} {describe_exit(code)} ({reason}): job Failed", lines
            )


def _stop(processes: list[Process]) -> None:
    for process in processes:
        process.stop()
