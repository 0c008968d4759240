"""One pod on the local node, from binding to deletion: what a kubelet's pod worker does, with processes.

A pod's containers become local processes (see podspec.py for the translation). The
worker runs the init containers in order, then every container; it restarts containers
under the pod's restartPolicy with the kubelet's backoff (10 s, doubling, at most 300 s),
restarts a container whose livenessProbe or startupProbe fails, holds the other probes until the
startupProbe succeeds, tracks readiness from the readinessProbe,
and reports it all as the pod's status: phase, conditions and containerStatuses with
restartCount, exit codes and reasons. Deleting the pod sends SIGTERM to its containers
and SIGKILL once its grace period is over, then removes the pod object, as a kubelet
does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from local_cluster.api import ApiError
from local_cluster.node.components import component_for_image, image_defaults
from local_cluster.node.errors import RefusedError
from local_cluster.node.podspec import ContainerPlan, PodContext, build_container_plan, prepare_volumes
from local_cluster.node.probes import ProbeState, probe_spec
from local_cluster.node.supervisor import Process

if TYPE_CHECKING:
    from local_cluster.node.kubelet import Node

BACKOFF_MAX_S = 300.0
PLAN_RETRY_S = 2.0
TICK_S = 0.2


def now_rfc3339() -> str:
    """The time as the API server writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotYetError(Exception):
    """Something the pod needs is not there yet (its claim is not bound); try again shortly."""


@dataclass
class ContainerRun:
    """One container of the pod: its plan, its current process and what the kubelet reports of it."""

    spec: dict
    plan: ContainerPlan
    init: bool
    process: Process | None = None
    restart_count: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    restart_at: float | None = None
    readiness: ProbeState | None = None
    liveness: ProbeState | None = None
    startup: ProbeState | None = None
    started: bool = False

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> dict:
        """The containerStatus the kubelet would report."""
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"local://{self.process.pid}" if self.process and self.process.pid else "",
            "ready": self.ready,
            "started": running and self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker(threading.Thread):
    """Runs one pod until it ends or is deleted; `update()` hands it the newest pod object."""

    def __init__(self, node: Node, pod: dict):
        super().__init__(daemon=True, name=f"pod {pod['metadata']['name']}")
        self.node = node
        self.pod = pod
        self.meta = pod["metadata"]
        self.where = f"Pod {self.meta['namespace']}/{self.meta['name']}"
        self.lock = threading.Lock()
        self.stop_grace: float | None = None
        self.gone = False
        self.containers: list[ContainerRun] = []
        self.inits: list[ContainerRun] = []
        self.reported: dict | None = None
        self.message: tuple[str, str] | None = None
        self.initialized = False
        self.phase = "Pending"
        self.finished = threading.Event()

    # --- what the node tells the worker -----------------------------------------------------------------
    def update(self, pod: dict) -> None:
        """The newest version of the pod; a deletionTimestamp starts the graceful stop."""
        with self.lock:
            self.pod = pod
            if pod["metadata"].get("deletionTimestamp") and self.stop_grace is None:
                self.stop_grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30))

    def vanish(self, grace: float | None = None) -> None:
        """The pod object is gone (force-deleted), or the node stops: stop its containers, report nothing more.

        `grace` defaults to none for a force-deleted pod; the node passes the pod's own when it shuts down.
        """
        with self.lock:
            self.gone = True
            if self.stop_grace is None:
                self.stop_grace = 0.0 if grace is None else grace

    def stop_requested(self) -> bool:
        with self.lock:
            return self.stop_grace is not None

    # --- the pod's life -----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as err:
            self.node.console.say(f"{self.where}: the node failed to run it: {type(err).__name__}: {err}")
            self._stop_all(0.0)
        finally:
            self.finished.set()

    def _run(self) -> None:
        self._report()
        if not self._plan():
            return self._finish()
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for run in self.inits:
            if not self._run_init(run, policy):
                return self._finish()
        self.initialized = True
        for run in self.containers:
            self._start(run)
        self.phase = "Running"
        self._report()
        while not self.stop_requested():
            changed = False
            for run in self.containers:
                changed |= self._tick(run, policy)
            self.phase = self._phase(policy)
            if changed:
                self._report()
            if self.phase in ("Succeeded", "Failed"):
                self._report()
                break
            time.sleep(TICK_S)
        self._finish()

    def _plan(self) -> bool:
        """Translate every container; wait while a claim is unbound or a Service is unknown; False if stopped."""
        while not self.stop_requested():
            try:
                self.inits, self.containers = self._plans()
                self.message = None
                return True
            except (NotYetError, ApiError, OSError) as wait:
                self.message = ("ContainerCreating", str(wait))
            except RefusedError as refusal:
                # A kubelet reports a container it cannot configure this way, and keeps retrying.
                self.message = ("CreateContainerConfigError", str(refusal))
            self._report()
            self._sleep(PLAN_RETRY_S)
        return False

    def _plans(self) -> tuple[list[ContainerRun], list[ContainerRun]]:
        spec = self.pod["spec"]
        workload = self.node.workload_of(self.pod)
        context = PodContext(
            workload=workload,
            pod_name=self.meta["name"],
            namespace=self.meta["namespace"],
            template={"metadata": self.meta, "spec": spec},
            local_name=self.meta["uid"][:8],
            uid=self.meta["uid"],
            node_name=self.node.name,
        )
        objects = self.node.objects(self.meta["namespace"])
        prepare_volumes(context, self.node.pods_dir, objects, self.node.claims(self.meta["namespace"], spec))
        ports = self.node.assign_ports(self.pod)
        hosts = self.node.host_map(self.meta["namespace"])
        runs = []
        for init, container in [(True, c) for c in spec.get("initContainers", [])] + [
            (False, c) for c in spec.get("containers", [])
        ]:
            label = f"{'init container' if init else 'container'} {container['name']}"
            component = component_for_image(container.get("image", ""), f"{workload} {label}")
            plan = build_container_plan(
                pod=context,
                container=container,
                label=label,
                prefix=f"{self.meta['name']}/{container['name']}",
                component=component,
                image=image_defaults(component),
                injected=[],
                ports=ports[container["name"]],
                hosts=hosts,
                rendering=objects,
            )
            self.node.localise(plan)
            run = ContainerRun(container, plan, init)
            where = f"{workload} {label}"
            if not init:
                readiness = probe_spec(container, "readinessProbe", plan.ports, where)
                liveness = probe_spec(container, "livenessProbe", plan.ports, where)
                startup = probe_spec(container, "startupProbe", plan.ports, where)
                run.readiness = ProbeState(readiness, 0, False) if readiness else None
                run.liveness = ProbeState(liveness, 0, True) if liveness else None
                run.startup = ProbeState(startup, 0, False) if startup else None
            runs.append(run)
        return [r for r in runs if r.init], [r for r in runs if not r.init]

    def _run_init(self, run: ContainerRun, policy: str) -> bool:
        """Run one init container to success, restarting it unless the policy is Never; False if it cannot."""
        while not self.stop_requested():
            self._start(run)
            self._report()
            while run.process.poll() is None and not self.stop_requested():
                time.sleep(TICK_S)
            if self.stop_requested():
                return False
            code = self._ended(run)
            if code == 0:
                self._report()
                return True
            if policy == "Never":
                self.phase = "Failed"
                self._report()
                return False
            self._backoff(run)
            self._report()
            if not self._sleep_until(run.restart_at):
                return False
        return False

    def _start(self, run: ContainerRun) -> None:
        if run.process is None:
            run.process = self.node.start_process(run.plan, self.meta, run.name)
        else:
            run.restart_count += 1
            run.process.start()
        started = time.monotonic()
        run.state = {"running": {"startedAt": now_rfc3339()}}
        run.restart_at = None
        run.ready = run.readiness is None
        run.started = run.startup is None
        if run.readiness:
            run.readiness = ProbeState(run.readiness.spec, started, False)
        if run.liveness:
            run.liveness = ProbeState(run.liveness.spec, started, True)
        if run.startup:
            run.startup = ProbeState(run.startup.spec, started, False)

    def _ended(self, run: ContainerRun) -> int:
        """Record how the container's process ended; return its exit code as Kubernetes reports it."""
        code = run.process.poll()
        exit_code = 128 - code if code < 0 else code
        run.state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": run.state.get("running", {}).get("startedAt", now_rfc3339()),
                "finishedAt": now_rfc3339(),
                "containerID": f"local://{run.process.pid}",
            }
        }
        run.ready = False
        return exit_code

    def _backoff(self, run: ContainerRun) -> None:
        delay = min(self.node.backoff_s * 2**run.restart_count, BACKOFF_MAX_S)
        run.last_state = run.state
        run.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={run.name} pod={self.meta['name']}",
            }
        }
        run.restart_at = time.monotonic() + delay

    def _tick(self, run: ContainerRun, policy: str) -> bool:
        """Advance one container: restarts, exits, probes. True if its status changed."""
        now = time.monotonic()
        if run.restart_at is not None:
            if now >= run.restart_at:
                self._start(run)
                return True
            return False
        if "running" not in run.state:
            return False
        if run.process.poll() is not None:
            code = self._ended(run)
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                self._backoff(run)
            return True
        changed = False
        if not run.started:
            # The kubelet runs no other probe before the startupProbe succeeds; they are due from then on.
            if run.startup.step(now):
                run.started = changed = True
            elif run.startup.failures >= run.startup.spec.failure_threshold:
                return self._restart_unhealthy(run, policy, "startup")
            else:
                return False
        if run.liveness and run.liveness.step(now) is False:
            return self._restart_unhealthy(run, policy, "liveness")
        if run.readiness:
            result = run.readiness.step(now)
            if result is not None:
                run.ready, changed = result, True
        return changed

    def _restart_unhealthy(self, run: ContainerRun, policy: str, probe: str) -> bool:
        """Kill a container whose liveness or startup probe failed; its restart policy decides what follows."""
        self.node.console.say(f"{self.where} container {run.name}: {probe} probe failed, restarting it")
        run.process.stop(self._grace())
        self._ended(run)
        if policy != "Never":
            self._backoff(run)
        return True

    def _phase(self, policy: str) -> str:
        if any("running" in r.state or r.restart_at is not None for r in self.containers):
            return "Running"
        codes = [r.state.get("terminated", {}).get("exitCode") for r in self.containers]
        if codes and all(c is not None for c in codes):
            return "Succeeded" if all(c == 0 for c in codes) else "Failed"
        return "Running" if self.initialized else "Pending"

    def _grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _finish(self) -> None:
        with self.lock:
            grace, gone = self.stop_grace, self.gone
        if grace is not None:
            self._stop_all(grace)
            if not gone:
                self._report()
                self.node.remove_pod(self.pod)

    def _stop_all(self, grace: float) -> None:
        for run in reversed(self.inits + self.containers):
            if run.process is not None and run.process.poll() is None:
                run.process.stop(grace)
                self._ended(run)
            run.restart_at = None

    # --- waiting ------------------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        self._sleep_until(time.monotonic() + seconds)

    def _sleep_until(self, when: float) -> bool:
        while time.monotonic() < when:
            if self.stop_requested():
                return False
            time.sleep(TICK_S)
        return True

    # --- status -------------------------------------------------------------------------------------------
    def _report(self) -> None:
        status = self.status()
        if status == self.reported or self.gone:
            return
        try:
            self.node.api.merge_patch("Pod", self.meta["namespace"], self.meta["name"], {"status": status}, "status")
            self.reported = status
        except ApiError as err:
            if err.status != 404:
                self.node.console.say(f"{self.where}: status not reported: {err}")

    def status(self) -> dict:
        """The pod's status as a kubelet reports it."""
        all_ready = bool(self.containers) and all(r.ready for r in self.containers)
        stamp = now_rfc3339()

        def condition(kind: str, ok: bool, reason: str | None = None) -> dict:
            entry = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": stamp}
            if reason and not ok:
                entry["reason"] = reason
            return entry

        conditions = [
            condition("PodReadyToStartContainers", True),
            condition(
                "Initialized",
                self.initialized or not self.pod["spec"].get("initContainers"),
                "ContainersNotInitialized",
            ),
            condition("Ready", all_ready, "ContainersNotReady"),
            condition("ContainersReady", all_ready, "ContainersNotReady"),
            condition("PodScheduled", True),
        ]
        status = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.pod.get("status", {}).get("startTime") or stamp,
            "qosClass": self.pod.get("status", {}).get("qosClass", "Burstable"),
        }
        containers = self.containers or [self._placeholder(c) for c in self.pod["spec"].get("containers", [])]
        inits = self.inits or [self._placeholder(c) for c in self.pod["spec"].get("initContainers", [])]
        status["containerStatuses"] = [self._status_of(r) for r in containers]
        if inits:
            status["initContainerStatuses"] = [self._status_of(r) for r in inits]
        return _without_times(status, self.reported)

    def _placeholder(self, container: dict) -> ContainerRun:
        return ContainerRun(container, None, False)  # type: ignore[arg-type]

    def _status_of(self, run: ContainerRun) -> dict:
        status = run.status()
        if self.message and run.process is None:
            status["state"] = {"waiting": {"reason": self.message[0], "message": self.message[1]}}
        return status


def _without_times(status: dict, reported: dict | None) -> dict:
    """Keep the previous transition times of unchanged conditions, so that an unchanged status compares equal."""
    if reported:
        before = {c["type"]: c for c in reported.get("conditions", [])}
        for c in status["conditions"]:
            old = before.get(c["type"])
            if old and old["status"] == c["status"]:
                c["lastTransitionTime"] = old["lastTransitionTime"]
        status["startTime"] = reported.get("startTime", status["startTime"])
    return status


def log_dir(root: Path, pod_meta: dict) -> Path:
    """Where a pod's container logs go, as /var/log/pods/<namespace>_<name>_<uid> on a node."""
    path = root / f"{pod_meta['namespace']}_{pod_meta['name']}_{pod_meta['uid']}"
    path.mkdir(parents=True, exist_ok=True)
    return path
