"""A pod template's container as a local process: volumes, environment, command, ports, readiness.

The values are translated by `translate` (paths, hosts, ports) and checked by
`component_settings`; what cannot be emulated is refused with the workload's name.
"""

import base64
import json
import math
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from local_cluster import ports
from local_cluster.node.component_settings import check_settings
from local_cluster.node.components import Component, ImageDefaults, container_argv, resolve_program
from local_cluster.node.errors import RefusedError
from local_cluster.node.render import Rendering
from local_cluster.node.translate import HostMap, Mount, PathMap, expand, names_a_host, translate_args, translate_word

# Environment passed through from the user's shell; the rest comes from the image and the manifest.
PASSTHROUGH_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "USER")
IMAGE_ENV_REPLACED = ("PATH", "PYTHONPATH")
# Variables that operators set to a URL path, not a file: left as they are.
URL_PATH_ENV = ("PREDICTIVE_UNIT_METRICS_ENDPOINT",)
# Variables named so hold a port the container itself listens on (Seldon's PREDICTIVE_UNIT_*_SERVICE_PORT):
# they follow the container port to its local port.
OWN_PORT_ENV_SUFFIX = "SERVICE_PORT"
# Seldon hands the graph node's parameters to the model as JSON in this variable; STRING values that
# are paths are translated like arguments.
SELDON_PARAMETERS_ENV = "PREDICTIVE_UNIT_PARAMETERS"


def seldon_parameters(value: str, paths: PathMap, workload: str) -> str:
    """PREDICTIVE_UNIT_PARAMETERS with each path-valued STRING parameter translated (refused under no mount)."""
    try:
        parameters = json.loads(value)
    except ValueError:
        raise RefusedError(workload, f"env {SELDON_PARAMETERS_ENV} is not JSON: {value[:100]!r}") from None
    for p in parameters if isinstance(parameters, list) else []:
        if isinstance(p, dict) and p.get("type", "STRING") == "STRING" and str(p.get("value", "")).startswith("/"):
            p["value"] = paths.translate(p["value"], f"graph parameter {p.get('name')}", workload)
    return json.dumps(parameters)


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(text: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "2", "1Gi") as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def port_is_free(port: int) -> bool:
    """Whether `port` can be bound right now (as servers bind: SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (outside the ephemeral range, see local_cluster/ports.py)."""
    return ports.free_port()


@dataclass
class PodContext:
    """What a pod would know about itself, and where its volumes live locally."""

    workload: str
    pod_name: str
    namespace: str
    template: dict
    # A short folder name for the pod's emptyDirs: multiprocessing puts AF_UNIX sockets in
    # TMPDIR, and their paths may not exceed 107 bytes.
    local_name: str
    volumes: dict[str, Path] = field(default_factory=dict)
    uid: str = ""
    node_name: str = ""

    @property
    def spec(self) -> dict:
        return self.template.get("spec", {})


@dataclass
class Probe:
    """A readiness probe aimed at the local port: `http` (GET path answers 2xx/3xx) or `tcp` (port accepts)."""

    kind: str
    port: int
    path: str = "/"


@dataclass
class ContainerPlan:
    """Everything needed to start one container as a local process."""

    workload: str
    label: str
    prefix: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ports: dict[int, int]
    readiness: Probe | None
    grace_seconds: float


def prepare_volumes(pod: PodContext, scratch: Path, rendering: Rendering, claims: dict[str, Path]) -> None:
    """Give each volume of the pod a local folder: a claim's shared folder, or a fresh one under `scratch`."""
    pod_dir = scratch / pod.local_name
    for volume in pod.spec.get("volumes", []):
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                raise RefusedError(pod.workload, f"volume {name} uses claim {claim!r}, which does not exist")
            pod.volumes[name] = claims[claim]
        elif "emptyDir" in volume:
            pod.volumes[name] = _fresh_dir(pod_dir / name)
        elif "configMap" in volume or "secret" in volume:
            pod.volumes[name] = _project_files(pod, volume, pod_dir / name, rendering)
        elif "projected" in volume and hasattr(rendering, "token"):
            pod.volumes[name] = _projected(pod, volume, pod_dir / name, rendering)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise RefusedError(
                pod.workload,
                f"volume {name} of type {kinds} is not run by the local node "
                "(persistentVolumeClaim, emptyDir, configMap, secret, projected are)",
            )


def _projected(pod: PodContext, volume: dict, target: Path, objects) -> Path:
    """A projected volume (the service account token volume the API server adds): token, configMaps, secrets,
    downward API fields, written as files."""
    _fresh_dir(target)
    for source in volume["projected"].get("sources", []):
        files: dict[str, str] = {}
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files[token["path"]] = objects.token(
                pod.spec.get("serviceAccountName", "default"),
                token.get("audience"),
                int(token.get("expirationSeconds", 3600)),
                pod,
            )
        for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
            if key in source:
                data = _object_data(objects, kind, source[key]["name"]) or {}
                items = source[key].get("items") or [{"key": k, "path": k} for k in data]
                files.update({item["path"]: data[item["key"]] for item in items if item["key"] in data})
        for item in (source.get("downwardAPI") or {}).get("items", []):
            files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"], pod.workload)
        for path, text in files.items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(text)
    return target


def _fresh_dir(path: Path) -> Path:
    # An emptyDir starts empty with every new pod.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _project_files(pod: PodContext, volume: dict, target: Path, rendering: Rendering) -> Path:
    kind, source = ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
    name = source.get("name") or source.get("secretName")
    data = _object_data(rendering, kind, name)
    if data is None:
        if source.get("optional"):
            return _fresh_dir(target)
        raise RefusedError(pod.workload, f"volume {volume['name']} uses {kind} {name!r}, which does not exist")
    _fresh_dir(target)
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    for item in items:
        if item["key"] not in data:
            raise RefusedError(pod.workload, f"volume {volume['name']}: {kind} {name} has no key {item['key']!r}")
        path = target / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]])
    return target


def _object_data(rendering: Rendering, kind: str, name: str) -> dict[str, str] | None:
    obj = rendering.get(kind, name)
    if obj is None:
        return None
    data = dict(obj.get("data") or {})
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update(obj.get("stringData") or {})
    return {k: str(v) for k, v in data.items()}


def container_mounts(pod: PodContext, container: dict, label: str) -> list[Mount]:
    """The container's volume mounts with their local folders (subPath included)."""
    mounts = []
    for vm in container.get("volumeMounts", []):
        if vm["name"] not in pod.volumes:
            raise RefusedError(
                f"{pod.workload} {label}",
                f"volumeMount {vm['mountPath']} names volume {vm['name']!r}, which the pod does not define",
            )
        local = pod.volumes[vm["name"]]
        if vm.get("subPath"):
            local = local / vm["subPath"]
            local.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(vm["mountPath"], local, vm["name"]))
    return mounts


def resource_value(container: dict, ref: dict, workload: str) -> str:
    """The downward API value of a resourceFieldRef (`limits.cpu`, `requests.memory`, ...); kubelet rounding."""
    resource = ref["resource"]
    section, _, kind = resource.partition(".")
    resources = container.get("resources", {})
    value = resources.get(section, {}).get(kind)
    if value is None and section == "requests":
        value = resources.get("limits", {}).get(kind)
    if kind == "cpu":
        amount = parse_quantity(value) if value is not None else (os.cpu_count() or 1) if section == "limits" else 0
        divisor = parse_quantity(ref.get("divisor", "1"))
        return str(max(1, math.ceil(round(amount / divisor, 9)))) if amount else "0"
    if kind == "memory":
        amount = (
            parse_quantity(value) if value is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        )
        return str(math.ceil(amount / parse_quantity(ref.get("divisor", "1"))))
    raise RefusedError(workload, f"resourceFieldRef {resource} is not emulated (cpu and memory limits/requests are)")


def field_value(pod: PodContext, path: str, workload: str) -> str:
    """The downward API value of a fieldRef, for the synthesised local pod."""
    metadata = pod.template.get("metadata", {})
    simple = {
        "metadata.name": pod.pod_name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid or f"local-{pod.pod_name}",
        "spec.nodeName": pod.node_name or socket.gethostname(),
        "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(metadata.get(match.group(1), {}).get(match.group(2), ""))
    raise RefusedError(workload, f"fieldRef {path} is not emulated")


def manifest_env(pod: PodContext, container: dict, rendering: Rendering, label: str) -> list[tuple[str, str]]:
    """The container's envFrom and env, resolved (valueFrom included), in order, before any $(VAR) expansion."""
    workload = f"{pod.workload} {label}"
    result: list[tuple[str, str]] = []
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source.get("secretRef"))
        )
        if ref is None:
            raise RefusedError(workload, f"envFrom {source} is not emulated")
        data = _object_data(rendering, kind, ref["name"])
        if data is None and not ref.get("optional"):
            raise RefusedError(workload, f"envFrom names {kind} {ref['name']!r}, which does not exist")
        result += [(source.get("prefix", "") + k, v) for k, v in (data or {}).items()]
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" not in var:
            result.append((name, str(var.get("value", ""))))
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            result.append((name, field_value(pod, source["fieldRef"]["fieldPath"], workload)))
        elif "resourceFieldRef" in source:
            result.append((name, resource_value(container, source["resourceFieldRef"], workload)))
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind, ref = (
                ("ConfigMap", source["configMapKeyRef"])
                if "configMapKeyRef" in source
                else ("Secret", source["secretKeyRef"])
            )
            data = _object_data(rendering, kind, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise RefusedError(
                    workload,
                    f"env {name} reads key {ref['key']!r} of {kind} {ref['name']!r}, which does not exist",
                )
            result.append((name, data[ref["key"]]))
        else:
            raise RefusedError(workload, f"env {name}: valueFrom {sorted(source)} is not emulated")
    return result


def named_port(container: dict, port: int | str, workload: str) -> int:
    """A container port given by number or by name."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise RefusedError(workload, f"port name {port!r} is not declared in the container's ports")


def readiness_probe(container: dict, ports: dict[int, int], workload: str) -> Probe | None:
    """The container's readinessProbe aimed at the local port; exec and gRPC probes are refused."""
    probe = container.get("readinessProbe")
    if not probe:
        return None
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get.get("scheme", "HTTP") != "HTTP":
            raise RefusedError(workload, f"readinessProbe scheme {get['scheme']} is not emulated")
        port = named_port(container, get["port"], workload)
        return Probe("http", ports.get(port, port), get.get("path", "/"))
    if "tcpSocket" in probe:
        port = named_port(container, probe["tcpSocket"]["port"], workload)
        return Probe("tcp", ports.get(port, port))
    raise RefusedError(
        workload, f"readinessProbe {sorted(set(probe) & {'exec', 'grpc'})} is not emulated (httpGet and tcpSocket are)"
    )


def build_container_plan(
    *,
    pod: PodContext,
    container: dict,
    label: str,
    prefix: str,
    component: Component,
    image: ImageDefaults | None,
    injected: list[tuple[str, str]],
    ports: dict[int, int],
    hosts: HostMap,
    rendering: Rendering,
) -> ContainerPlan:
    """Resolve, expand and translate one container into a ContainerPlan; refuse what cannot be emulated."""
    workload = f"{pod.workload} {label}"
    workdir = image.workdir if image is not None else "/"
    paths = PathMap(container_mounts(pod, container, label), workdir, component.folder)
    cwd = component.folder
    if container.get("workingDir"):
        cwd = Path(paths.translate(container["workingDir"], "workingDir", workload))

    raw: dict[str, str] = {}
    for name, value in manifest_env(pod, container, rendering, label):
        raw[name] = expand(value, raw)
    env = {}
    for name, value in raw.items():
        if name in URL_PATH_ENV:
            env[name] = value
        elif name == SELDON_PARAMETERS_ENV:
            env[name] = seldon_parameters(value, paths, workload)
        else:
            env[name] = translate_word(value, paths, hosts, f"env {name}", workload, names_a_host(name))
    for name, value in env.items():
        if name.endswith(OWN_PORT_ENV_SUFFIX) and value.isdigit() and int(value) in ports:
            env[name] = str(ports[int(value)])
    for name, value in injected:
        raw[name] = value
        env[name] = hosts.translate_text(value, f"env {name}", workload, names_a_host(name))
    env.update(check_settings(component, env, hosts, workload))

    argv = [expand(word, raw) for word in container_argv(container, image, component, workload)]
    if not argv:
        raise RefusedError(workload, "neither the container nor the image's Dockerfile says what to run")
    argv = [resolve_program(component, argv[0], workload), *translate_args(argv[1:], paths, hosts, ports, workload)]

    if (
        Path(argv[0]).name == "gunicorn"
        and ports
        and not any(w in ("-b", "--bind") or w.startswith("--bind=") for w in argv)
    ):
        # The bind address then comes from a gunicorn config file, which the runner cannot rewrite;
        # GUNICORN_CMD_ARGS overrides the file (and the command line overrides both).
        env["GUNICORN_CMD_ARGS"] = (
            f"{env.get('GUNICORN_CMD_ARGS', '')} --bind 127.0.0.1:{next(iter(ports.values()))}".strip()
        )

    tmp = next((m.local for m in paths.mounts if m.path == "/tmp"), None)
    base = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    # The image's own ENV, except what the local environment decides (where programs and modules are).
    for name, value in image.env if image is not None else ():
        if name not in IMAGE_ENV_REPLACED and "$" not in value:
            base[name] = paths.translate_text(value)
    base["PATH"] = os.pathsep.join([str(component.bin_dir), "/usr/local/bin", "/usr/bin", "/bin"])
    base["PYTHONPATH"] = component.pythonpath
    if tmp is not None:
        base["TMPDIR"] = str(tmp)
    return ContainerPlan(
        workload=pod.workload,
        label=label,
        prefix=prefix,
        argv=argv,
        env={**base, **env},
        cwd=cwd,
        ports=ports,
        readiness=readiness_probe(container, ports, workload),
        grace_seconds=float(pod.spec.get("terminationGracePeriodSeconds", 30)),
    )


def local_ports(container: dict, preferred: dict[int, int]) -> dict[int, int]:
    """Container port -> local port: the preferred one if given, the same number if free, else a free one."""
    result = {}
    for p in container.get("ports", []):
        port = int(p["containerPort"])
        result[port] = preferred.get(port) or (port if port_is_free(port) else free_port())
    return result
