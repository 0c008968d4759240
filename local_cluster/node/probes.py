"""A container's readiness and liveness probes, aimed at its local ports, with the kubelet's timing fields."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from local_cluster.node.errors import RefusedError
from local_cluster.node.podspec import named_port


@dataclass
class ProbeSpec:
    """One probe: `http` (GET path answers 2xx/3xx) or `tcp` (the port accepts), and when to run it."""

    kind: str
    port: int
    path: str = "/"
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1

    def check(self) -> bool:
        """One attempt, as the kubelet makes it, on 127.0.0.1 and, if refused there, on ::1.

        ::1 because a server that binds the IPv6 wildcard (TensorBoard's --bind_all) is given
        the IPv6 loopback address by the bind-address shim.
        """
        return any(self._check(host) for host in ("127.0.0.1", "[::1]"))

    def _check(self, host: str) -> bool:
        try:
            if self.kind == "http":
                with urllib.request.urlopen(f"http://{host}:{self.port}{self.path}", timeout=self.timeout_s) as answer:
                    return 200 <= answer.status < 400
            with socket.create_connection((host.strip("[]"), self.port), timeout=self.timeout_s):
                return True
        except (OSError, urllib.error.URLError, ValueError):
            return False


def probe_spec(container: dict, key: str, ports: dict[int, int], workload: str) -> ProbeSpec | None:
    """The container's `readinessProbe` or `livenessProbe` on its local port; exec and gRPC probes are refused."""
    probe = container.get(key)
    if not probe:
        return None
    timing = {
        "initial_delay_s": float(probe.get("initialDelaySeconds", 0)),
        "period_s": float(probe.get("periodSeconds", 10)),
        "timeout_s": float(probe.get("timeoutSeconds", 1)),
        "failure_threshold": int(probe.get("failureThreshold", 3)),
        "success_threshold": int(probe.get("successThreshold", 1)),
    }
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get.get("scheme", "HTTP") != "HTTP":
            raise RefusedError(workload, f"{key} scheme {get['scheme']} is not run by the local node (HTTP is)")
        port = named_port(container, get["port"], workload)
        return ProbeSpec("http", ports.get(port, port), get.get("path", "/"), **timing)
    if "tcpSocket" in probe:
        port = named_port(container, probe["tcpSocket"]["port"], workload)
        return ProbeSpec("tcp", ports.get(port, port), **timing)
    kinds = sorted(set(probe) & {"exec", "grpc"})
    raise RefusedError(workload, f"{key} {kinds} is not run by the local node (httpGet and tcpSocket are)")


class ProbeState:
    """The running result of one probe for one container start: consecutive successes and failures."""

    def __init__(self, spec: ProbeSpec, started: float, initially: bool):
        self.spec = spec
        self.next_at = started + spec.initial_delay_s
        self.result = initially
        self.successes = 0
        self.failures = 0

    def step(self, now: float) -> bool | None:
        """Probe if it is time; return the new result when it changed, else None."""
        if now < self.next_at:
            return None
        self.next_at = now + self.spec.period_s
        ok = self.spec.check()
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)
        before = self.result
        if ok and self.successes >= self.spec.success_threshold:
            self.result = True
        elif not ok and self.failures >= self.spec.failure_threshold:
            self.result = False
        return self.result if self.result != before else None
