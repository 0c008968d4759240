"""A real HTTP server on 127.0.0.1 in Seldon's place, answering, failing or hanging as a test scripts it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mnist_frontend.images import grayscale_png

MODEL_VERSION = "v20261122T101500Z-1a2b3c"
PROBABILITIES = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.5, 0.12, 0.1]


def seldon_answer(probabilities=PROBABILITIES, version=MODEL_VERSION) -> dict:
    """What Seldon answers to a binData request: numbers as a tensor, the version in meta.tags."""
    return {
        "data": {"names": [str(d) for d in range(10)], "tensor": {"shape": [1, 10], "values": probabilities}},
        "meta": {"tags": {"model_version": version}},
    }


def digit_png() -> bytes:
    """A 28x28 PNG: a white vertical bar on black, something like a 1."""
    pixels = bytearray(28 * 28)
    for row in range(4, 24):
        for col in range(12, 16):
            pixels[row * 28 + col] = 255
    return grayscale_png(bytes(pixels), 28, 28)


class ScriptedSeldon:
    """A real HTTP server that answers POSTs with what the test set via `answer` and records each request."""

    def __init__(self):
        self.status = 200
        self.body: bytes = json.dumps(seldon_answer()).encode()
        self.content_type = "application/json"
        self.delay = 0.0
        self.requests: list[dict] = []
        self._release = threading.Event()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1.0/predictions"

    def answer(self, status=200, body=None, delay=0.0, content_type="application/json") -> None:
        """Script the next answers: `body` is JSON-encoded unless it is bytes; `delay` seconds before answering."""
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(seldon_answer() if body is None else body).encode()
        self.delay = delay
        self.content_type = content_type

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                server.requests.append(
                    {"path": self.path, "content_type": self.headers.get("Content-Type"), "json": json.loads(raw)}
                )
                self._send(server.status, server.body)

            def do_GET(self):
                # Seldon's model server answers 405 to a GET of the predictions endpoint.
                self._send(405, b'{"error": "method not allowed"}')

            def _send(self, status, body):
                if server.delay:
                    server._release.wait(server.delay)
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A hanging answer released at teardown writes to a connection the client already closed.
        pass
