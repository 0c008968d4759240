"""The real KServe ModelServer serving the model `mnist` (serving/kserve_predictor) as a background process."""

from pathlib import Path

import requests
from support.processes import REPO, Server, component_env, free_port, venv_bin, wait_for_http

SERVE = REPO / "serving" / "kserve_predictor" / "serve_mnist.py"


class KServeServer(Server):
    """serve_mnist.py in the KServe environment (.venv/kserve), on a free port, following `model_root`."""

    def __init__(self, model_root: Path, poll_interval_s: float = 1.0, max_batch: int | None = None):
        self.http_port = free_port()
        argv = [
            venv_bin("kserve"),
            str(SERVE),
            "--model_root",
            str(model_root),
            "--poll_interval_s",
            str(poll_interval_s),
            "--http_port",
            str(self.http_port),
        ]
        if max_batch is not None:
            argv += ["--max_batch", str(max_batch)]
        super().__init__(argv, env=component_env("kserve"))
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.v1_url = f"{self.url}/v1/models/mnist:predict"
        self.v2_url = f"{self.url}/v2/models/mnist/infer"

    def start(self) -> "KServeServer":
        super().start()
        # Live as soon as uvicorn serves; the model's readiness waits for a published version.
        wait_for_http(f"{self.url}/v2/health/live", timeout=120, proc=self.proc)
        return self

    def ready(self) -> requests.Response:
        return requests.get(f"{self.url}/v2/models/mnist/ready", timeout=10)

    def predict_v1(self, body: dict) -> requests.Response:
        return requests.post(self.v1_url, json=body, timeout=10)

    def infer_v2(self, body: dict) -> requests.Response:
        return requests.post(self.v2_url, json=body, timeout=10)

    def metrics(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=10).text
