"""The part of the kubelet's HTTPS API that `kubectl logs` goes through: /containerLogs/<ns>/<pod>/<container>.

The API server proxies `kubectl logs` to the node's address and `daemonEndpoints.kubeletEndpoint`
port. This server answers from the log files the node writes (one per container, all restarts
appended), with `tailLines`, `follow` and `limitBytes`. It listens on 127.0.0.1 only, with the
local cluster's serving certificate; the local API server does not authenticate to kubelets
(no --kubelet-client-certificate), so neither does this.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

FOLLOW_POLL_S = 0.2


class KubeletApi:
    """The HTTPS server, serving the node's container logs until `stop()`."""

    def __init__(self, logs_dir: Path, cert: Path, key: Path, finished, uid_of):
        """`finished(namespace, pod)`: whether the pod's containers have all ended (ends a `follow`);
        `uid_of(namespace, pod)`: the uid of the pod of that name on this node now, or None."""
        self.logs_dir = logs_dir
        self.finished = finished
        self.uid_of = uid_of
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="kubelet api")

    def start(self) -> None:
        """Serve in a thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def log_file(self, namespace: str, pod: str, container: str) -> Path | None:
        """The log file of that container of the pod of that name now (not of an earlier pod of the same name)."""
        uid = self.uid_of(namespace, pod)
        path = self.logs_dir / f"{namespace}_{pod}_{uid}" / f"{container}.log"
        return path if uid is not None and path.exists() else None


class _Handler(BaseHTTPRequestHandler):
    api: KubeletApi

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(404, f"not found: {url.path} (this node serves /containerLogs/<ns>/<pod>/<container>)")
            return
        _, namespace, pod, container = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = self.api.log_file(namespace, pod, container)
        if path is None:
            # What a kubelet answers for a container that has not started.
            self._error(400, f'container "{container}" in pod "{pod}" is waiting to start: no log yet')
            return
        try:
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
        except ValueError:
            self._error(400, "tailLines and limitBytes must be integers")
            return
        lines = path.read_bytes().splitlines(keepends=True)
        body = b"".join(lines[-tail:] if tail is not None else lines)
        if tail == 0:
            body = b""
        if limit is not None:
            body = body[:limit]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)
        if query.get("follow") == "true":
            self._follow(path, namespace, pod)

    def _follow(self, path: Path, namespace: str, pod: str) -> None:
        offset = path.stat().st_size
        try:
            while True:
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as log:
                        log.seek(offset)
                        self.wfile.write(log.read(size - offset))
                    self.wfile.flush()
                    offset = size
                elif self.api.finished(namespace, pod):
                    return
                time.sleep(FOLLOW_POLL_S)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
