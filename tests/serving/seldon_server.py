"""The real `seldon-core-microservice MnistClassifier` as a background process on free ports."""

import json
from pathlib import Path

import grpc
import requests
from seldon_core.proto import prediction_pb2_grpc
from support.processes import Server, component_env, free_port, venv_bin, wait_for_http

from MnistClassifier import DEFAULT_POLL_INTERVAL_S


class SeldonServer(Server):
    """seldon-core-microservice serving MnistClassifier from `model_root`, with its own HTTP, gRPC and metrics ports."""

    def __init__(
        self,
        model_root: Path,
        workers: int = 1,
        threads: int = 1,
        grpc_workers: int = 1,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ):
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        parameters = [
            {"name": "model_root", "value": str(model_root), "type": "STRING"},
            {"name": "poll_interval_s", "value": str(poll_interval_s), "type": "FLOAT"},
        ]
        env = component_env(
            "serving",
            PREDICTIVE_UNIT_PARAMETERS=json.dumps(parameters),
            PREDICTIVE_UNIT_HTTP_SERVICE_PORT=str(self.http_port),
            PREDICTIVE_UNIT_GRPC_SERVICE_PORT=str(self.grpc_port),
            PREDICTIVE_UNIT_METRICS_SERVICE_PORT=str(self.metrics_port),
            GUNICORN_WORKERS=str(workers),
            GUNICORN_THREADS=str(threads),
            GRPC_WORKERS=str(grpc_workers),
        )
        super().__init__([venv_bin("serving", "seldon-core-microservice"), "MnistClassifier"], env=env)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.predictions_url = f"{self.url}/api/v1.0/predictions"

    def start(self) -> "SeldonServer":
        super().start()
        # /health/ping answers as soon as gunicorn serves; /health/status only once a model is loaded.
        wait_for_http(f"{self.url}/health/ping", timeout=60, proc=self.proc)
        wait_for_http(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30, proc=self.proc)
        return self

    def health(self) -> requests.Response:
        return requests.get(f"{self.url}/health/status", timeout=10)

    def predict(self, body: dict) -> requests.Response:
        return requests.post(self.predictions_url, json=body, timeout=10)

    def grpc_stub(self, timeout: float = 30.0) -> prediction_pb2_grpc.ModelStub:
        """A stub for the Model service, once the gRPC port accepts connections."""
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return prediction_pb2_grpc.ModelStub(channel)
