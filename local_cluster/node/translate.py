"""Container values translated for a local process: paths under volume mounts, in-cluster hosts, own ports.

Processes cannot mount volumes or resolve cluster DNS, so the values a container is
given are translated instead: a path under a volume mount becomes the local folder of
that volume, a path under the image's WORKDIR becomes the component's source folder,
an in-cluster host (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`) becomes 127.0.0.1 with
the local port behind that Service port. A path under no mount, or a host that names no
Service, is refused: on a cluster it would write into the container's own filesystem or
fail to resolve.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from local_cluster.node.errors import RefusedError

# In-image paths that exist on this machine too and mean the same thing.
SYSTEM_PREFIXES = ("/dev", "/proc", "/sys", "/etc", "/usr", "/bin", "/lib")
_URL = re.compile(r"\b(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d+))?")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+):(?P<port>\d+)$")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_cluster_host(host: str) -> bool:
    """Whether `host` looks like an in-cluster DNS name rather than an outside host or an address."""
    if host in ("localhost",) or re.fullmatch(r"[0-9.]+", host):
        return False
    return "." not in host or host.endswith((".svc", ".svc.cluster.local", ".cluster.local"))


class HostMap:
    """In-cluster Service names -> 127.0.0.1 and the local port behind each Service port."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.services: dict[str, dict[int, int]] = {}

    def add(self, service: str, ports: dict[int, int]) -> None:
        """Make `service` (any of its DNS forms) resolve locally, Service port -> local port."""
        self.services.setdefault(service, {}).update(ports)

    def service_of(self, host: str) -> str | None:
        """The Service a host name designates (`svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`), or None."""
        for name in self.services:
            forms = {name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc"}
            forms.add(f"{name}.{self.namespace}.svc.cluster.local")
            if host in forms:
                return name
        return None

    def local_port(self, service: str, port: int, what: str, workload: str) -> int:
        ports = self.services[service]
        if port not in ports:
            raise RefusedError(workload, f"{what}: Service {service} has no port {port} (it serves {sorted(ports)})")
        return ports[port]

    def known(self) -> str:
        return ", ".join(f"{s}:{'/'.join(str(p) for p in sorted(ports))}" for s, ports in self.services.items())

    def translate_text(self, value: str, what: str, workload: str, bare_host: bool = False) -> str:
        """Rewrite URLs and a whole `host:port` value that name in-cluster Services.

        A whole value that is just a Service name is rewritten only where a host is
        expected (`bare_host`): elsewhere the same word may be a label or an id.
        """

        def url(match: re.Match) -> str:
            host = match.group("host")
            service = self.service_of(host)
            if service is None:
                if is_cluster_host(host):
                    raise RefusedError(workload, f"{what}: {match.group(0)} names no Service ({self.known()})")
                return match.group(0)
            port = int(match.group("port") or _DEFAULT_PORTS.get(match.group("scheme"), 0))
            return f"{match.group('scheme')}://127.0.0.1:{self.local_port(service, port, what, workload)}"

        value = _URL.sub(url, value)
        whole = _HOST_PORT.match(value)
        if whole and (service := self.service_of(whole.group("host"))):
            return f"127.0.0.1:{self.local_port(service, int(whole.group('port')), what, workload)}"
        if bare_host and self.service_of(value):
            return "127.0.0.1"
        return value


@dataclass
class Mount:
    """A volume mount: where the container sees it, and the local folder standing in for it."""

    path: str
    local: Path
    volume: str


class PathMap:
    """Container paths -> local paths, for one container: its mounts, then the image's WORKDIR."""

    def __init__(self, mounts: list[Mount], workdir: str, component_folder: Path):
        self.mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)
        self.workdir = workdir
        self.component_folder = component_folder

    @staticmethod
    def _under(path: str, prefix: str) -> bool:
        return path == prefix or path.startswith(prefix.rstrip("/") + "/")

    def translate(self, path: str, what: str, workload: str) -> str:
        """The local path for the container path `path`; refuse a path that lies under no mount."""
        for mount in self.mounts:
            if self._under(path, mount.path):
                return str(mount.local) + path[len(mount.path.rstrip("/")) :]
        if self.workdir != "/" and self._under(path, self.workdir):
            return str(self.component_folder) + path[len(self.workdir.rstrip("/")) :]
        if any(self._under(path, p) for p in SYSTEM_PREFIXES):
            return path
        mounts = ", ".join(m.path for m in self.mounts) or "none"
        raise RefusedError(
            workload,
            f"{what} {path} is not under any volume mount ({mounts}) nor the image's WORKDIR ({self.workdir}): "
            "on a cluster it would land in the container's own filesystem and be lost",
        )

    def translate_text(self, text: str) -> str:
        """Rewrite mount paths inside free text (a shell script) in one pass, without judging other words."""
        if not self.mounts:
            return text
        local = {m.path.rstrip("/"): str(m.local) for m in self.mounts}
        alternatives = "|".join(re.escape(p) for p in local)
        return re.sub(rf"(?<![\w/])({alternatives})(?=/|\b|$)", lambda m: local[m.group(1)], text)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are substituted, $$ is a literal $, the rest stays."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(one, value)


def names_a_host(name: str) -> bool:
    """Whether a variable or flag name says its value is a host (MASTER_ADDR, --master-addr, DB_HOST)."""
    return any(part in name.lower() for part in ("addr", "host"))


def translate_word(word: str, paths: PathMap, hosts: HostMap, what: str, workload: str, bare_host: bool = False) -> str:
    """Translate one argument or environment value: a path, `--flag=path`, a URL, `host[:port]`, or free text."""
    if any(c.isspace() for c in word):
        return hosts.translate_text(paths.translate_text(word), what, workload)
    if word.startswith("/"):
        parts = word.split(":")
        if all(p.startswith("/") for p in parts):
            return ":".join(paths.translate(p, what, workload) for p in parts)
    flag, eq, value = word.partition("=")
    if eq and flag.startswith("-"):
        if value.startswith("/"):
            return f"{flag}={paths.translate(value, f'{what} {flag}', workload)}"
        return f"{flag}={hosts.translate_text(value, f'{what} {flag}', workload, names_a_host(flag))}"
    return hosts.translate_text(word, what, workload, bare_host)


def translate_args(argv: list[str], paths: PathMap, hosts: HostMap, ports: dict[int, int], workload: str) -> list[str]:
    """Translate each argument (paths, hosts), and the container's own ports in bind addresses and --*port flags."""
    result = []
    previous = ""
    for word in argv:
        flag = previous if previous.startswith("-") and "=" not in previous else ""
        word = translate_word(word, paths, hosts, f"arg {flag}".strip(), workload, names_a_host(flag))
        result.append(_translate_port(word, previous, ports))
        previous = word
    return result


def _translate_port(word: str, previous: str, ports: dict[int, int]) -> str:
    bind = re.fullmatch(
        r"(?P<flag>--?[\w-]+=)?(?P<host>0\.0\.0\.0|\[::\]|127\.0\.0\.1|localhost|)?:(?P<port>\d+)", word
    )
    if bind and int(bind.group("port")) in ports:
        return f"{bind.group('flag') or ''}127.0.0.1:{ports[int(bind.group('port'))]}"
    if "port" in previous.lower() and previous.startswith("-") and word.isdigit() and int(word) in ports:
        return str(ports[int(word)])
    flag, eq, value = word.partition("=")
    if eq and "port" in flag.lower() and flag.startswith("-") and value.isdigit() and int(value) in ports:
        return f"{flag}={ports[int(value)]}"
    return word
