"""The local node: registers a Node, binds the pods nobody schedules to it, and runs them as processes.

What it does, in one loop every half second:
- keeps the Node `Ready` and its Lease in kube-node-lease renewed, as a kubelet does;
- binds every pod that has no node and asks for the default scheduler (there is no
  kube-scheduler: this is the only node);
- gives every pending claim a PersistentVolume (hostPath under `volumes_dir/<claim>`,
  the demo's folder layout, reclaim policy Retain), which the controller manager's
  PV binder then binds;
- runs a PodWorker per pod bound here (pod_worker.py), and tells it when the pod is
  deleted.

Networking: every pod shares this machine's loopback (host networking). A Service name
(`svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`) or a pod's `hostname.subdomain` in a
container's arguments or environment is rewritten to 127.0.0.1 and the local port behind
it; `nslookup` in operator-added init containers answers from the same table. Each
container port keeps its number unless that is taken, or unless `publish` names the
local port for that component's first port (FRONTEND_PORT, MODEL_PORT).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from local_cluster import build, pki
from local_cluster.api import Api, ApiError
from local_cluster.node.components import component_for_image
from local_cluster.node.errors import RefusedError
from local_cluster.node.kubelet_api import KubeletApi
from local_cluster.node.pod_worker import NotYetError, PodWorker, log_dir, now_rfc3339
from local_cluster.node.podspec import ContainerPlan, free_port, port_is_free
from local_cluster.node.supervisor import Console, Supervisor
from local_cluster.node.translate import HostMap

NODE_NAME = "local-node"
SYNC_S = 0.5
LEASE_S = 40
HEARTBEAT_S = 10.0
BACKOFF_S = 10.0
MAX_SHUTDOWN_S = 35.0
# First on every process's PYTHONPATH: its sitecustomize makes servers that bind every interface bind
# DEMO_BIND_ADDRESS instead.
BIND_ADDRESS_SHIM = Path(__file__).resolve().parent / "bind_address"
MANAGER = "local-node"


class ApiObjects:
    """ConfigMaps and Secrets of one namespace, read from the API server when a pod needs them."""

    def __init__(self, api: Api, namespace: str):
        self.api = api
        self.namespace_name = namespace

    def get(self, kind: str, name: str) -> dict | None:
        """The object `kind/name` of the namespace, or None."""
        return self.api.get(kind, self.namespace_name, name)

    def namespace(self) -> str:
        return self.namespace_name

    def token(self, service_account: str, audience: str | None, expiration_s: int, pod) -> str:
        """A token for the pod's ServiceAccount, bound to the pod, from the TokenRequest API."""
        spec = {
            "expirationSeconds": max(expiration_s, 600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.pod_name, "uid": pod.uid},
        }
        if audience:
            spec["audiences"] = [audience]
        path = self.api.path("ServiceAccount", self.namespace_name, service_account, "token")
        answer = self.api.request(
            "POST", path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        )
        return answer["status"]["token"]


class PodConsole(Console):
    """A container's output: to the node's console with the container's prefix, and to its log file."""

    def __init__(self, console: Console, log_file: Path):
        super().__init__(console.stream, console.name)
        self.lock = console.lock
        self.log_file = log_file

    def line(self, prefix: str, text: str) -> None:
        super().line(prefix, text)
        with self.log_file.open("a") as out:
            out.write(text + "\n")


class Node:
    """One local node, run by `loop()` until `stop()`."""

    def __init__(
        self,
        api: Api,
        state_dir: Path,
        volumes_dir: Path,
        console: Console,
        publish: dict[str, int] | None = None,
        bind_address: str = "127.0.0.1",
        backoff_s: float = BACKOFF_S,
        name: str = NODE_NAME,
        bind_namespaces: tuple[str, ...] = (),
    ):
        """`bind_namespaces`: bind only the unscheduled pods of these namespaces (tests that share a control
        plane with others); empty, every namespace."""
        self.api = api
        self.name = name
        self.state_dir = state_dir
        self.volumes_dir = volumes_dir
        self.console = console
        self.publish = publish or {}
        self.bind_address = bind_address
        self.backoff_s = backoff_s
        self.bind_namespaces = bind_namespaces
        # The pods' emptyDirs, in a short path: multiprocessing puts AF_UNIX sockets in TMPDIR (an emptyDir
        # at /tmp), and their paths may not exceed 107 bytes. Removed when the node stops.
        self.pods_dir = Path(tempfile.mkdtemp(prefix="local-node-"))
        self.logs_dir = state_dir / "logs" / "pods"
        self.hosts_file = state_dir / "hosts"
        self.supervisor = Supervisor(console, state_dir / "node-processes.json")
        self.workers: dict[str, PodWorker] = {}
        self.pods: list[dict] = []
        self.services: list[dict] = []
        self.ports: dict[str, dict[str, dict[int, int]]] = {}
        self.ports_lock = threading.Lock()
        self.stopping = threading.Event()
        self.last_heartbeat = 0.0
        self.kubelet_api: KubeletApi | None = None

    # --- the loop ---------------------------------------------------------------------------------------
    def loop(self) -> None:
        """Register, then sync until `stop()`; stop every container on the way out."""
        for line in self.supervisor.open():
            self.console.say(f"stopped a container that a node which did not stop cleanly left behind: {line}")
        credentials = pki.ensure_pki(build.cache_dir() / "pki")
        self.kubelet_api = KubeletApi(
            self.logs_dir, credentials.webhook_cert, credentials.webhook_key, self.pod_finished, self.uid_of
        )
        self.kubelet_api.start()
        try:
            self.register()
            while not self.stopping.is_set():
                try:
                    self.sync()
                except (ApiError, OSError) as err:
                    self.console.say(f"node: sync failed, retrying: {err}")
                self.stopping.wait(SYNC_S)
        finally:
            # Each pod stops its containers with its own grace period, all pods at once, as a kubelet
            # shutting down does; what is left after that, the supervisor stops.
            for worker in self.workers.values():
                worker.vanish(grace=float(worker.pod["spec"].get("terminationGracePeriodSeconds", 30)))
            for worker in self.workers.values():
                worker.join(timeout=MAX_SHUTDOWN_S)
            self.supervisor.close()
            self.kubelet_api.stop()
            shutil.rmtree(self.pods_dir, ignore_errors=True)

    def stop(self) -> None:
        """Ask `loop()` to end."""
        self.stopping.set()

    def register(self) -> None:
        """Create (or refresh) the Node and its Lease."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": os.uname().machine.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                    "node.kubernetes.io/local": "true",
                },
            },
        }
        self.api.apply("Node", None, node, MANAGER)
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        """Renew the Lease and report the Node Ready, every HEARTBEAT_S."""
        if not force and time.monotonic() - self.last_heartbeat < HEARTBEAT_S:
            return
        self.last_heartbeat = time.monotonic()
        stamp = now_rfc3339()
        micro = stamp.replace("Z", ".000000Z")
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_S, "renewTime": micro},
        }
        self.api.apply("Lease", "kube-node-lease", lease, MANAGER)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory // 1024}Ki", "pods": "110"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            # No Hostname address: the API server would try to resolve it to reach the kubelet API.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_api.port}},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "local node: containers run as processes of this machine",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "local",
                "containerRuntimeVersion": "local://processes",
                "operatingSystem": "linux",
                "architecture": os.uname().machine,
                "osImage": "",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        }
        self.api.merge_patch("Node", None, self.name, {"status": status}, "status")

    def sync(self) -> None:
        """One pass: heartbeat, volumes, hosts, bindings, pod workers."""
        self.heartbeat()
        self.provision_volumes()
        self.pods = self.api.list("Pod")
        self.services = self.api.list("Service")
        self.write_hosts()
        for pod in self.pods:
            spec, meta = pod["spec"], pod["metadata"]
            if not spec.get("nodeName") and not meta.get("deletionTimestamp"):
                ours = not self.bind_namespaces or meta["namespace"] in self.bind_namespaces
                if ours and spec.get("schedulerName", "default-scheduler") == "default-scheduler" and self.bind(pod):
                    self.run_pod({**pod, "spec": {**spec, "nodeName": self.name}})
            elif spec.get("nodeName") == self.name:
                self.run_pod(pod)
        present = {p["metadata"]["uid"] for p in self.pods}
        for uid, worker in list(self.workers.items()):
            if uid not in present:
                worker.vanish()
            if worker.finished.is_set() and uid not in present:
                del self.workers[uid]
                with self.ports_lock:
                    self.ports.pop(uid, None)

    def bind(self, pod: dict) -> bool:
        """Assign the pod to this node (what the scheduler would do); False if it is gone or bound already."""
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        try:
            self.api.request("POST", self.api.path("Pod", meta["namespace"], meta["name"], "binding"), binding)
        except ApiError as err:
            if err.status not in (404, 409):
                raise
            return False
        return True

    def run_pod(self, pod: dict) -> None:
        """Start a worker for a new pod, or hand the newest object to its worker."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self.remove_pod(pod)
                return
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.start()
        else:
            worker.update(pod)
            if worker.finished.is_set() and pod["metadata"].get("deletionTimestamp"):
                self.remove_pod(pod)

    def uid_of(self, namespace: str, name: str) -> str | None:
        """The uid of the newest pod of that name on this node."""
        uids = [u for u, w in list(self.workers.items()) if w.meta["namespace"] == namespace and w.meta["name"] == name]
        return uids[-1] if uids else None

    def pod_finished(self, namespace: str, name: str) -> bool:
        """Whether no container of the pod of that name runs any more (or there is no such pod here)."""
        uid = self.uid_of(namespace, name)
        worker = self.workers.get(uid) if uid else None
        return worker is None or worker.finished.is_set() or worker.phase in ("Succeeded", "Failed")

    def remove_pod(self, pod: dict) -> None:
        """Delete the pod object once its containers have stopped (what a kubelet does at the end)."""
        meta = pod["metadata"]
        self.api.delete(
            "Pod", meta["namespace"], meta["name"], gracePeriodSeconds=0, preconditions={"uid": meta["uid"]}
        )

    # --- volumes ----------------------------------------------------------------------------------------
    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The local folder behind a claim: `<volumes_dir>/<claim>` (other namespaces: `<ns>/<claim>`)."""
        return self.volumes_dir / claim if namespace == "default" else self.volumes_dir / namespace / claim

    def provision_volumes(self) -> None:
        """A hostPath PersistentVolume pre-bound to each pending claim; Released ones of ours are removed."""
        for pv in self.api.list("PersistentVolume", labelSelector=f"{MANAGER}/provisioned=true"):
            if pv.get("status", {}).get("phase") == "Released":
                self.api.delete("PersistentVolume", None, pv["metadata"]["name"])
        for pvc in self.api.list("PersistentVolumeClaim"):
            meta, spec = pvc["metadata"], pvc["spec"]
            if spec.get("volumeName") or pvc.get("status", {}).get("phase") != "Pending":
                continue
            folder = self.claim_dir(meta["namespace"], meta["name"])
            folder.mkdir(parents=True, exist_ok=True)
            pv = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-{meta['uid'][:13]}", "labels": {f"{MANAGER}/provisioned": "true"}},
                "spec": {
                    "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                    "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": spec.get("storageClassName") or "",
                    "volumeMode": spec.get("volumeMode", "Filesystem"),
                    "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                },
            }
            try:
                self.api.create("PersistentVolume", None, pv)
            except ApiError as err:
                if err.status != 409:
                    raise

    def claims(self, namespace: str, spec: dict) -> dict[str, Path]:
        """Claim name -> local folder for the pod's claims; NotYetError while one is not bound."""
        result = {}
        for volume in spec.get("volumes", []):
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.api.get("PersistentVolumeClaim", namespace, claim)
            if pvc is None:
                raise NotYetError(f'persistentvolumeclaim "{claim}" not found')
            if pvc.get("status", {}).get("phase") != "Bound":
                raise NotYetError(f'persistentvolumeclaim "{claim}" is not bound yet')
            pv = self.api.get("PersistentVolume", None, pvc["spec"]["volumeName"])
            path = ((pv or {}).get("spec", {}).get("hostPath") or {}).get("path")
            if not path:
                raise RefusedError(f"PersistentVolumeClaim/{claim}", "its volume is not a hostPath volume")
            result[claim] = Path(path)
        return result

    # --- networking -------------------------------------------------------------------------------------
    def assign_ports(self, pod: dict) -> dict[str, dict[int, int]]:
        """Container name -> {container port: local port} for the pod, chosen once per pod."""
        uid = pod["metadata"]["uid"]
        with self.ports_lock:
            if uid in self.ports:
                return self.ports[uid]
            taken = {p for ports in self.ports.values() for c in ports.values() for p in c.values()}
            result = {}
            for container in pod["spec"].get("initContainers", []) + pod["spec"].get("containers", []):
                result[container["name"]] = self._local_ports(container, taken)
                taken |= set(result[container["name"]].values())
            self.ports[uid] = result
            return result

    def _local_ports(self, container: dict, taken: set[int]) -> dict[int, int]:
        declared = [p for p in container.get("ports", []) if "containerPort" in p]
        try:
            component = component_for_image(container.get("image", ""), "").name
        except RefusedError:
            component = None
        published = None
        if component in self.publish and declared:
            http = [p for p in declared if p.get("name") in ("http", "http1")]
            published = int((http or declared)[0]["containerPort"])
        result = {}
        for p in declared:
            port = int(p["containerPort"])
            if port == published:
                result[port] = self.publish[component]
            elif port not in taken and port not in self.publish.values() and port_is_free(port):
                result[port] = port
            else:
                result[port] = free_port()
        return result

    def _selected(self, service: dict) -> list[dict]:
        selector = service["spec"].get("selector") or {}
        if not selector:
            return []
        namespace = service["metadata"]["namespace"]
        return [
            p
            for p in self.pods
            if p["metadata"]["namespace"] == namespace
            and not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]

    def _pod_port(self, pod: dict, target: int | str) -> int | None:
        ports = self.assign_ports(pod)
        for container in pod["spec"].get("containers", []):
            for p in container.get("ports", []):
                if target == p.get("name") or str(target) == str(p.get("containerPort")):
                    return ports[container["name"]][int(p["containerPort"])]
        return int(target) if str(target).isdigit() else None

    def host_map(self, namespace: str) -> HostMap:
        """Every Service of the namespace, and every pod's `hostname.subdomain`, on 127.0.0.1."""
        hosts = HostMap(namespace)
        for service in self.services:
            if service["metadata"]["namespace"] != namespace:
                continue
            pods = self._selected(service)
            mapped = {}
            for p in service["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                local = next((port for pod in pods if (port := self._pod_port(pod, target))), None)
                if local is not None:
                    mapped[int(p["port"])] = local
            if mapped or not service["spec"].get("ports"):
                hosts.add(service["metadata"]["name"], mapped)
        for pod in self.pods:
            spec = pod["spec"]
            if pod["metadata"]["namespace"] == namespace and spec.get("subdomain"):
                hostname = spec.get("hostname") or pod["metadata"]["name"]
                ports = {port: local for c in self.assign_ports(pod).values() for port, local in c.items()}
                hosts.add(f"{hostname}.{spec['subdomain']}", ports)
        return hosts

    def write_hosts(self) -> None:
        """The names `nslookup` answers, every DNS form of every Service and pod hostname."""
        names = []
        for service in self.services:
            name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
            names += [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        for pod in self.pods:
            spec, ns = pod["spec"], pod["metadata"]["namespace"]
            if spec.get("subdomain"):
                name = f"{spec.get('hostname') or pod['metadata']['name']}.{spec['subdomain']}"
                names += [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{n}\n" for n in names))
        os.replace(tmp, self.hosts_file)

    def localise(self, plan: ContainerPlan) -> None:
        """What every process of the node gets: the bind-address shim, loopback gloo, the hosts table."""
        plan.env["DEMO_BIND_ADDRESS"] = self.bind_address
        plan.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BIND_ADDRESS_SHIM), plan.env.get("PYTHONPATH")]))
        plan.env.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
        plan.env["LOCAL_NODE_HOSTS"] = str(self.hosts_file)

    # --- processes and messages -------------------------------------------------------------------------
    def start_process(self, plan: ContainerPlan, pod_meta: dict, container: str):
        """Start a container's process under the node's supervisor, its output also in its log file."""
        log_file = log_dir(self.logs_dir, pod_meta) / f"{container}.log"
        return self.supervisor.start(plan, PodConsole(self.console, log_file))

    def objects(self, namespace: str) -> ApiObjects:
        """The ConfigMaps and Secrets a pod of `namespace` can use."""
        return ApiObjects(self.api, namespace)

    def workload_of(self, pod: dict) -> str:
        """`Kind/name` of the workload that owns the pod, followed up to its top owner, then the pod."""
        meta = pod["metadata"]
        chain = [f"Pod/{meta['name']}"]
        owner = _controller(meta)
        namespace = meta["namespace"]
        for _ in range(4):
            if owner is None:
                break
            chain.insert(0, f"{owner['kind']}/{owner['name']}")
            group = owner["apiVersion"]
            plural = owner["kind"].lower() + "s"
            try:
                obj = self.api.request(
                    "GET",
                    f"/{'apis/' if '/' in group else 'api/'}{group}/namespaces/{namespace}/{plural}/{owner['name']}",
                )
            except ApiError:
                break
            owner = _controller(obj["metadata"])
        return chain[0] if len(chain) == 1 else f"{chain[0]} {chain[-1]}"


def _controller(meta: dict) -> dict | None:
    return next((o for o in meta.get("ownerReferences", []) if o.get("controller")), None)


def loopback_interface() -> str:
    """The name of the loopback network interface (lo on Linux, lo0 on macOS)."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return names[0] if names else "lo"
