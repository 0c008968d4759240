"""A KServe model that does no work, on kserve's ModelServer: what the server alone costs per request.

`bench_serve.py --floor` runs it as it runs serve_mnist.py (one process, the same log
settings: serving/kserve_predictor on PYTHONPATH for request_logs), so the table shows
how much of a KServe request is kserve (uvicorn, FastAPI, its V1 and V2 request and
response models) and how much is the classifier; and with
kserve's own `--workers 2` (one spawned process per worker), the most that kserve's
multi-process mode could give on two cores.

    python serve_kserve_floor.py --http_port 8080 [--workers 1] [--model_root IGNORED]
"""

import argparse
import atexit
import copy
import json
import os
import tempfile

import kserve
from kserve import model_server
from kserve.logging import KSERVE_LOG_CONFIG
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from request_logs import REQUEST_LOGGERS, quiet_request_logs

CLASS_NAMES = [str(i) for i in range(10)]
PROBABILITIES = [0.1] * 10


class ConstantKServeModel(kserve.Model):
    """Answers every V1 or V2 prediction with the same ten probabilities, in the shape MnistModel gives."""

    def __init__(self, name: str = "mnist"):
        super().__init__(name)
        self.ready = True

    def predict(self, payload: dict | InferRequest, headers: dict | None = None) -> dict | InferResponse:
        """A fixed answer, without reading the request."""
        if not isinstance(payload, InferRequest):
            return {"predictions": [PROBABILITIES], "names": CLASS_NAMES, "model_version": "floor"}
        output = InferOutput(name="probabilities", shape=[1, 10], datatype="FP32", data=PROBABILITIES)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


def quiet_log_config_file() -> str:
    """A copy of kserve's log configuration without the per-request lines, as a file for the worker processes."""
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    for name in REQUEST_LOGGERS:
        config["loggers"].setdefault(name, {})["level"] = "WARNING"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="kserve-floor-log-", delete=False) as file:
        json.dump(config, file)
    atexit.register(os.unlink, file.name)
    return file.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[model_server.parser])
    parser.add_argument("--model_root", help="accepted as serve_mnist.py accepts it, and ignored")
    args = parser.parse_args()
    if args.workers > 1:
        # Each spawned worker configures its logging anew from kserve's parsed arguments.
        model_server.args.log_config_file = quiet_log_config_file()
    server = kserve.ModelServer(
        http_port=args.http_port,
        workers=args.workers,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    quiet_request_logs()
    server.start([ConstantKServeModel()])


if __name__ == "__main__":
    main()
