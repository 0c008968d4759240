"""A real Kubernetes control plane on this machine: etcd, kube-apiserver (PodSecurity admission on),
kube-controller-manager and the Training Operator, as plain processes, listening on loopback.

The model is controller-runtime's envtest: one object owns the processes, CRDs are installed the way the
operators' own installs do (server-side apply), and each operator's admission webhook is registered with
the API server at `https://127.0.0.1:<port>`, served over TLS with a certificate from `pki.py`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from local_cluster import build, kserve, pki, ports, trainer_v2
from local_cluster.api import Api
from local_cluster.processes import ProcessTable, is_running
from local_cluster.versions import load_versions

REPO = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "kubeflow"
SERVICE_CIDR = "10.96.0.0/16"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
KEEPER = REPO / "local_cluster" / "node" / "keeper.py"
INIT_CONTAINER_TEMPLATE = REPO / "operators" / "training-operator" / "init-container.yaml"
# The one webhook of the Training Operator that matters here (it runs only its PyTorchJob controller).
TRAINING_OPERATOR_GROUP = "kubeflow.org"
TRAINING_OPERATOR_WEBHOOK = "validator.training-operator.kubeflow.org"
TRAINING_OPERATOR_WEBHOOK_PATH = "/validate-kubeflow-org-v1-pytorchjob"
# Where a kubelet would mount the webhook Secret; the Training Operator's certificate manager has it built
# in (pkg/cert/cert.go) and waits for tls.crt there. Every local cluster writes the same files (pki.py
# makes one webhook certificate per cache), so clusters that run side by side do not disturb each other.
WEBHOOK_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")


class ClusterError(RuntimeError):
    """The control plane could not be started; the message says which process and why."""


@dataclass
class Ports:
    """The loopback ports of one control plane."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    operator_webhook: int
    operator_metrics: int
    operator_probes: int
    jobset_webhook: int
    jobset_metrics: int
    jobset_probes: int
    trainer_webhook: int
    trainer_metrics: int
    trainer_probes: int
    trainer_status: int
    kserve_webhook: int
    kserve_metrics: int
    kserve_probes: int

    @classmethod
    def free(cls) -> Ports:
        """Ports that are free right now, outside the ephemeral range (local_cluster/ports.py)."""
        return cls(*ports.free_ports(len(cls.__dataclass_fields__)))


class ControlPlane:
    """The processes of one local control plane, their state kept in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        crds_dir: Path,
        log=print,
        *,
        kubeconfig: Path | None = None,
        tied_to_caller: bool = False,
        trainer_v2: bool = True,
        kserve: bool = True,
    ):
        """`tied_to_caller`: the processes stop when this Python process dies (the demo); `trainer_v2`: start
        Trainer v2 and JobSet too (the Training Operator always runs); `kserve`: start the KServe controller."""
        self.state_dir = state_dir.resolve()
        self.crds_dir = crds_dir
        self.log = log
        self.table = ProcessTable(self.state_dir, keeper=KEEPER if tied_to_caller else None)
        self.kubeconfig = (kubeconfig or self.state_dir / "kubeconfig").resolve()
        self.with_trainer_v2 = trainer_v2
        self.with_kserve = kserve
        self._api: Api | None = None
        self._started = time.monotonic()
        self._binaries: dict[str, Path] = {}
        self.pki = pki.ensure_pki(build.cache_dir() / "pki")
        self.ports_file = self.state_dir / "ports.json"

    # --- starting and stopping --------------------------------------------------------------------------
    def up(self, timeout_s: float = 180.0) -> None:
        """Start everything and wait until it is ready; a no-op if this cluster is already running."""
        if self.running():
            self.log(f"local-cluster: already running ({self.state_dir})")
            return
        self.start_core(timeout_s)
        self.start_operators(timeout_s)

    def start_core(self, timeout_s: float = 180.0) -> None:
        """etcd, the API server and the controller manager, with the CRDs installed: ready for plain objects.

        Objects that an operator's webhook must see wait for `start_operators` (see `needs_operators`).
        """
        self.down(quiet=True)
        self._started = time.monotonic()
        self._binaries = binaries = build.ensure_built(build.binaries(load_versions()), log=self.log)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ports = Ports.free()
        self.ports_file.write_text(json.dumps(ports.__dict__))
        self._write_kubeconfig(ports)
        deadline = time.monotonic() + timeout_s
        with self._stopped_on_failure():
            self._start_etcd(binaries["etcd"], ports, deadline)
            self._start_apiserver(binaries["kube-apiserver"], ports, deadline)
            # The controller manager needs no CRD: it starts while they are installed.
            self._start_controller_manager(binaries["kube-controller-manager"], ports)
            self._install_crds(deadline)
            self._wait("kube-controller-manager", f"https://127.0.0.1:{ports.controller_manager}/healthz", deadline)

    def start_operators(self, timeout_s: float = 180.0) -> None:
        """The Training Operator, and Trainer v2 with JobSet and KServe where wanted, each waited for."""
        binaries, ports = self._binaries, self.ports()
        deadline = time.monotonic() + timeout_s
        with self._stopped_on_failure():
            self._mount_webhook_certs()
            self._start_training_operator(binaries["training-operator"], ports, deadline)
            if self.with_trainer_v2:
                trainer_v2.start_jobset(self, binaries["jobset"], ports, deadline)
                trainer_v2.start_trainer(self, binaries["trainer-controller-manager"], ports, deadline)
            if self.with_kserve:
                kserve.start_kserve(self, binaries["kserve-controller-manager"], ports, deadline)
            self._wait_for_default_service_account(deadline)
        self.log(f"local-cluster: ready in {time.monotonic() - self._started:.0f} s")

    def needs_operators(self, obj: dict) -> bool:
        """True for an object that an operator's admission webhook must see: apply it after `start_operators`."""
        group = obj.get("apiVersion", "").rpartition("/")[0]
        return group in (TRAINING_OPERATOR_GROUP, *self._operator_groups())

    @contextlib.contextmanager
    def _stopped_on_failure(self):
        """Stop every process when starting fails, and say why as a ClusterError."""
        try:
            yield
        except ClusterError:
            self.down(quiet=True)
            raise
        except BaseException as err:
            self.down(quiet=True)
            raise ClusterError(f"{type(err).__name__}: {err}") from err

    def down(self, quiet: bool = False) -> None:
        """Stop every process this cluster started, newest first; none is left."""
        names = [r.name for r in self.table.records() if is_running(r)]
        killed = self.table.stop_all()
        if not quiet:
            if names:
                self.log(f"local-cluster: stopped {', '.join(names)}" + (f" (killed: {killed})" if killed else ""))
            else:
                self.log("local-cluster: nothing was running")

    def running(self) -> bool:
        """True when every recorded process is alive and the API server answers."""
        records = self.table.records()
        if not records or not all(is_running(r) for r in records) or not self.ports_file.exists():
            return False
        return self._ready(f"https://127.0.0.1:{self.ports().apiserver}/readyz")

    def ports(self) -> Ports:
        """The ports of the running cluster."""
        return Ports(**json.loads(self.ports_file.read_text()))

    # --- kubectl -------------------------------------------------------------------------------------
    @property
    def kubectl_path(self) -> str:
        """The kubectl this cluster is driven with."""
        return kubectl_command()

    def apply_objects(self, objects: list[dict]) -> None:
        """Server-side apply of a list of objects in one kubectl call."""
        if objects:
            self.kubectl(
                "apply",
                "--server-side",
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
            )

    def api(self) -> Api:
        """A REST client for this cluster (kubectl costs a process per call; CRDs are megabytes)."""
        if self._api is None:
            self._api = Api(self.kubeconfig, timeout_s=60)
        return self._api

    def apply_crds(self, crds: list[dict], deadline: float) -> None:
        """Server-side apply CRDs, then wait until each is Established."""
        crds = [open_untyped_items(c) for c in crds if c.get("kind") == "CustomResourceDefinition"]
        for crd in crds:
            self.api().request(
                "PATCH",
                f"{CRD_PATH}/{crd['metadata']['name']}",
                crd,
                "application/apply-patch+yaml",
                fieldManager="local-cluster",
                force="true",
            )
        waiting = {c["metadata"]["name"] for c in crds}
        while waiting:
            for name in sorted(waiting):
                conditions = (self.api().request("GET", f"{CRD_PATH}/{name}").get("status") or {}).get("conditions")
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions or []):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise ClusterError(f"CRDs not Established in time: {', '.join(sorted(waiting))}")
            if waiting:
                time.sleep(0.1)

    def start_controller(self, name: str, argv: list[str], probe_port: int, deadline: float, env=None) -> None:
        """Start an operator with this cluster's kubeconfig and wait until its /readyz answers."""
        # TMPDIR=/tmp: controller-runtime's webhook server reads its certificates under os.TempDir().
        self.table.start(name, argv, env={"KUBECONFIG": str(self.kubeconfig), "TMPDIR": "/tmp", **(env or {})})
        self._wait(name, f"http://127.0.0.1:{probe_port}/readyz", deadline, tls=False)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster."""
        done = subprocess.run(
            [kubectl_command(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    # --- the processes -------------------------------------------------------------------------------
    def _start_etcd(self, binary: Path, ports: Ports, deadline: float) -> None:
        data = self.state_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        client, peer = f"http://127.0.0.1:{ports.etcd_client}", f"http://127.0.0.1:{ports.etcd_peer}"
        self.table.start(
            "etcd",
            [
                str(binary),
                "--name=local",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                # A throwaway store: durability across power loss is not wanted, speed is.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", f"{client}/health", deadline, tls=False)

    def _start_apiserver(self, binary: Path, ports: Ports, deadline: float) -> None:
        p = self.pki
        self.table.start(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={p.apiserver_cert}",
                f"--tls-private-key-file={p.apiserver_key}",
                f"--client-ca-file={p.ca_cert}",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=PodSecurity",
                # Endpoints may not hold loopback addresses, so the `kubernetes` Service gets none.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            ],
        )
        self._wait("kube-apiserver", f"https://127.0.0.1:{ports.apiserver}/readyz", deadline)

    def _start_controller_manager(self, binary: Path, ports: Ports) -> None:
        p = self.pki
        self.table.start(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.controller_manager}",
                f"--tls-cert-file={p.apiserver_cert}",
                f"--tls-private-key-file={p.apiserver_key}",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
            ],
        )

    def _start_training_operator(self, binary: Path, ports: Ports, deadline: float) -> None:
        self._register_training_operator_webhook(ports)
        self.start_controller(
            "training-operator",
            [
                str(binary),
                "--enable-scheme=pytorchjob",
                f"--webhook-server-port={ports.operator_webhook}",
                f"--metrics-bind-address=127.0.0.1:{ports.operator_metrics}",
                f"--health-probe-bind-address=127.0.0.1:{ports.operator_probes}",
                f"--pytorch-init-container-template-file={INIT_CONTAINER_TEMPLATE}",
                "--zap-log-level=info",
            ],
            ports.operator_probes,
            deadline,
            env={"MY_POD_NAMESPACE": OPERATOR_NAMESPACE},
        )
        self._wait_for_webhook("training-operator", ports.operator_webhook, TRAINING_OPERATOR_WEBHOOK_PATH, deadline)

    def _wait_for_webhook(self, name: str, port: int, path: str, deadline: float) -> None:
        """Wait until the webhook server serves `path`: an operator's /readyz can pass before it registers
        its webhooks, and the API server then refuses the operator's kinds (404 from the webhook)."""
        url = f"https://127.0.0.1:{port}{path}"

        def serves() -> bool:
            try:
                # An empty review gets an answer (an error review) once the path is served, a 404 before.
                return requests.post(url, data=b"", verify=str(self.pki.ca_cert), timeout=2).status_code != 404
            except requests.RequestException:
                return False

        self._wait_until(name, url, serves, deadline)

    # --- what the operators' installs would create -------------------------------------------------
    def _install_crds(self, deadline: float) -> None:
        """The CRDs in the CRDs folder, applied server-side, and the operators' namespace.

        A CRD of an operator this cluster does not start is left out: the API server spends seconds on
        each large schema, and nothing would reconcile its objects.
        """
        skipped = {group for group, wanted in self._operator_groups().items() if not wanted}
        crds = [
            crd
            for path in sorted(self.crds_dir.glob("*.yaml"))
            for crd in crds_of(path)
            if crd.get("spec", {}).get("group") not in skipped
        ]
        if not crds:
            raise ClusterError(f"no CRDs in {self.crds_dir}: run `make crds` or set CRDS_DIR")
        self.log(f"local-cluster: installing {len(crds)} CRDs from {self.crds_dir}")
        self.apply_crds(crds, deadline)
        self.kubectl("create", "namespace", OPERATOR_NAMESPACE)

    def _operator_groups(self) -> dict[str, bool]:
        """The API group of each optional operator's CRDs, and whether this cluster starts it."""
        return {trainer_v2.API_GROUP: self.with_trainer_v2, kserve.API_GROUP: self.with_kserve}

    def _register_training_operator_webhook(self, ports: Ports) -> None:
        """The webhook Secret that the operator's cert-controller adopts, and its webhook configuration.

        The Secret holds our CA and a serving certificate for 127.0.0.1 and the operator's Service name
        (cert-controller keeps certificates that verify for that name), so the operator serves it.
        """
        p = self.pki
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "training-operator-webhook-cert", "namespace": OPERATOR_NAMESPACE},
            "data": {
                "ca.crt": _b64(p.ca_cert),
                "ca.key": _b64(p.ca_key),
                "tls.crt": _b64(p.webhook_cert),
                "tls.key": _b64(p.webhook_key),
            },
        }
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": TRAINING_OPERATOR_WEBHOOK},
            "webhooks": [
                {
                    "name": "validator.pytorchjob.training-operator.kubeflow.org",
                    "admissionReviewVersions": ["v1"],
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{ports.operator_webhook}{TRAINING_OPERATOR_WEBHOOK_PATH}",
                        "caBundle": _b64(p.ca_cert),
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "rules": [
                        {
                            "apiGroups": ["kubeflow.org"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["pytorchjobs"],
                        }
                    ],
                }
            ],
        }
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(secret))
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(config))

    def _mount_webhook_certs(self) -> None:
        """Put the webhook certificate where a kubelet would mount the operators' webhook Secrets."""
        p = self.pki
        WEBHOOK_CERT_DIR.mkdir(parents=True, exist_ok=True)
        for name, source in (("ca.crt", p.ca_cert), ("tls.crt", p.webhook_cert), ("tls.key", p.webhook_key)):
            staged = WEBHOOK_CERT_DIR / f".{name}.{os.getpid()}"
            staged.write_bytes(source.read_bytes())
            staged.chmod(0o600)
            os.replace(staged, WEBHOOK_CERT_DIR / name)

    def _wait_for_default_service_account(self, deadline: float) -> None:
        """Pods need the `default` ServiceAccount, which the controller manager creates."""
        while time.monotonic() < deadline:
            if self.api().get("ServiceAccount", "default", "default") is not None:
                return
            time.sleep(0.1)
        raise ClusterError("the controller manager did not create the default ServiceAccount in time")

    # --- helpers -------------------------------------------------------------------------------------
    def _write_kubeconfig(self, ports: Ports) -> None:
        p = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{ports.apiserver}",
                        "certificate-authority-data": _b64(p.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "local-admin",
                    "user": {"client-certificate-data": _b64(p.admin_cert), "client-key-data": _b64(p.admin_key)},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local-admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)
        self._api = None

    def _ready(self, url: str, tls: bool = True) -> bool:
        try:
            if tls:
                cert = (str(self.pki.admin_cert), str(self.pki.admin_key))
                answer = requests.get(url, cert=cert, verify=str(self.pki.ca_cert), timeout=2)
            else:
                answer = requests.get(url, timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def _wait(self, name: str, url: str, deadline: float, tls: bool = True) -> None:
        self.log(f"local-cluster: starting {name}")
        self._wait_until(name, url, lambda: self._ready(url, tls), deadline)

    def _wait_until(self, name: str, url: str, ready, deadline: float) -> None:
        """Poll `ready()` until it is true; a ClusterError with its last lines if the process exits or time runs out."""
        record = next(r for r in reversed(self.table.records()) if r.name == name)
        while time.monotonic() < deadline:
            if not is_running(record):
                raise ClusterError(f"{name} exited during start-up:\n{self.table.log_tail(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"{name} was not ready in time ({url}):\n{self.table.log_tail(name)}")


def crds_of(path: Path) -> list[dict]:
    """The CRDs of a YAML file, parsed once per content and then read from a JSON copy (YAML is slow)."""
    text = path.read_bytes()
    cached = build.cache_dir() / "crds" / f"{hashlib.sha256(text).hexdigest()}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    docs = yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    crds = [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    cached.parent.mkdir(parents=True, exist_ok=True)
    staged = cached.with_suffix(f".{os.getpid()}.tmp")
    staged.write_text(json.dumps(crds))
    os.replace(staged, cached)
    return crds


def open_untyped_items(node):
    """The CRD with every `items: {}` made an object that keeps unknown fields.

    controller-gen writes `items: {}` where a type refers to itself (the SeldonDeployment's
    graph.children), and the API server refuses an array whose items have no type. Every other
    part of the schema is left as it is, and so still validated.
    """
    if isinstance(node, dict):
        fixed = {k: open_untyped_items(v) for k, v in node.items()}
        if fixed.get("type") == "array" and fixed.get("items") == {}:
            fixed["items"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return fixed
    if isinstance(node, list):
        return [open_untyped_items(v) for v in node]
    return node


def kubectl_command() -> str:
    """kubectl beside this Python (the tools environment pins it), else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise ClusterError("kubectl not found: run `make venvs`")
    return found


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
