"""Seldon Core v1 model class: classify MNIST digits with the model the trainer published on the shared volume.

Started by seldon-core 1.17.1 as

    seldon-core-microservice MnistClassifier --service-type MODEL

with `serving/` and `trainer/` on PYTHONPATH. Seldon builds one instance in the
main process and forks it into every gunicorn worker and gRPC process; each of
those calls `load()`, which starts following the model root (see model_versions).
Requests are decoded and checked by request_validation, images prepared by
image_preprocessing; Seldon's REST error handling is completed by http_errors,
and its per-request metrics bookkeeping is buffered by metrics_buffer.
"""

import gc
import logging
import threading

import metrics_buffer
import numpy as np
import torch
from google.protobuf import json_format
from http_errors import RequestError, error_blueprint
from model_versions import LoadedModel, ModelWatcher
from request_validation import (
    DEFAULT_MAX_BATCH,
    InvalidInputError,
    ParsedRequest,
    parse_json_request,
    parse_proto_request,
)
from seldon_core.proto import prediction_pb2
from seldon_core.utils import array_to_grpc_datadef

from mnist_ddp.model import ARCHITECTURE, NUM_CLASSES

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ROOT = "/mnt/pvc/models/mnist"
DEFAULT_POLL_INTERVAL_S = 1.0
MAX_BATCH_LIMIT = 1024
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]
PREDICTIONS_METRIC = "mnist_predictions_total"
VERSION_METRIC = "mnist_model_version_info"
# Seldon's own labels on every metric include `model_version` (the image tag), which would win.
VERSION_LABEL = "served_version"


class MnistClassifier:
    """Serve probabilities of the ten digits for 28x28 images or PNG/JPEG drawings.

    Parameters (SeldonDeployment graph `parameters`, i.e. PREDICTIVE_UNIT_PARAMETERS):
      model_root       STRING  where the trainer publishes versions (default /mnt/pvc/models/mnist)
      poll_interval_s  FLOAT   how often LATEST is re-read for a new version (default 1.0)
      max_batch        INT     most images per request (default 64)
      metrics_flush_s  FLOAT   how often each worker hands its metrics to Seldon's store (default 1.0);
                               0 keeps Seldon's own update on every request (see metrics_buffer)
    """

    def __init__(
        self,
        model_root: str = DEFAULT_MODEL_ROOT,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        metrics_flush_s: float = metrics_buffer.FLUSH_INTERVAL_S,
    ):
        # Runs in Seldon's main process before the fork: no model, no torch threads, no watcher here.
        self.model_root = str(model_root)
        self.poll_interval_s = float(poll_interval_s)
        self.max_batch = int(max_batch)
        self.metrics_flush_s = float(metrics_flush_s)
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s is {poll_interval_s}: expected a positive number of seconds")
        if not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise ValueError(f"max_batch is {max_batch}: expected 1 to {MAX_BATCH_LIMIT}")
        if self.metrics_flush_s < 0:
            raise ValueError(f"metrics_flush_s is {metrics_flush_s}: expected 0 (unbuffered) or more seconds")
        if self.metrics_flush_s > 0:
            metrics_buffer.install(self.metrics_flush_s)
        self.model_error_handler = error_blueprint()
        self._watcher: ModelWatcher | None = None
        self._metrics_lock = threading.Lock()
        self._reported_version: str | None = None

    def load(self) -> None:
        """Start following the model root in this process (called by Seldon in each worker after the fork)."""
        # One request holds one image or a small batch: parallelism comes from the workers, and one
        # intra-op thread per worker keeps them from fighting over the cores.
        torch.set_num_threads(1)
        self._watcher = ModelWatcher(self.model_root, self.poll_interval_s)
        self._watcher.start()
        # torch, Flask and Seldon leave some 200k objects that the collector would otherwise scan in
        # every full collection: a pause of tens to hundreds of milliseconds in the middle of requests.
        # Frozen, they are left out of collection (they are still freed when no longer referenced).
        gc.freeze()
        served = self._watcher.current
        logger.info("MnistClassifier loaded: %s", served.version if served else self._watcher.problem)

    def _served(self) -> LoadedModel:
        served = self._watcher.current_or_check() if self._watcher else None
        if served is None:
            problem = self._watcher.problem if self._watcher else "load() has not run in this process"
            raise RequestError(f"no model to serve yet: {problem}", status_code=503, reason="MODEL_NOT_READY")
        return served

    def health_status(self) -> dict:
        """Readiness: the served version, or HTTP 503 while no verified model is loaded."""
        return {"status": "ok", "model_version": self._served().version}

    def tags(self) -> dict:
        """Seldon response tags: the served model version."""
        served = self._watcher.current if self._watcher else None
        return {"model_version": served.version} if served else {}

    def metrics(self, predicted_counts: np.ndarray | None = None) -> list[dict]:
        """Seldon custom metrics: the served version as an info gauge and, for a prediction, the count per class.

        Seldon adds COUNTER values to its running totals and keeps the last value of
        a GAUGE, per worker; the gauge of a replaced version is set back to 0 once.
        Seldon itself calls this without arguments (on health checks); predict_raw
        passes the classes it just predicted, so each count is reported exactly once.
        """
        counts = np.zeros(NUM_CLASSES, dtype=np.int64) if predicted_counts is None else predicted_counts
        metrics = [
            {"type": "COUNTER", "key": PREDICTIONS_METRIC, "value": int(count), "tags": {"class": name}}
            for name, count in zip(CLASS_NAMES, counts, strict=True)
            if count
        ]
        served = self._watcher.current if self._watcher else None
        with self._metrics_lock:
            if served is not None:
                if self._reported_version not in (None, served.version):
                    metrics.append(self._version_gauge(self._reported_version, 0))
                self._reported_version = served.version
                metrics.append(self._version_gauge(served.version, 1))
        return metrics

    @staticmethod
    def _version_gauge(version: str, value: int) -> dict:
        return {"type": "GAUGE", "key": VERSION_METRIC, "value": value, "tags": {VERSION_LABEL: version}}

    def init_metadata(self) -> dict:
        """Model metadata for Seldon's /api/v1.0/metadata (fixed at start; the served version is a response tag)."""
        return {
            "name": "mnist-classifier",
            "platform": "pytorch",
            "inputs": [
                {"messagetype": "ndarray", "schema": {"shape": [28, 28]}},
                {"messagetype": "tensor", "schema": {"shape": [784]}},
                {"messagetype": "binData"},
            ],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": CLASS_NAMES, "shape": [NUM_CLASSES]}}],
            "custom": {
                "architecture": ARCHITECTURE,
                "input_shapes": "(n, 784), (n, 28, 28) or (n, 1, 28, 28)",
                "input_values": "[0, 1], white digit on black, as in MNIST",
                "bin_data": "PNG or JPEG of one digit, any size, grayscale, RGB or RGBA",
                "max_batch": str(self.max_batch),
                "output": "probabilities (n, 10) of the digits 0-9",
            },
        }

    def predict_raw(self, request):
        """Answer a REST body (dict) or gRPC SeldonMessage with probabilities (n, 10) named "0".."9"."""
        served = self._served()
        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        try:
            if is_proto:
                parsed = parse_proto_request(request, self.max_batch)
            else:
                parsed = parse_json_request(request, self.max_batch)
        except InvalidInputError as exc:
            raise RequestError(str(exc), status_code=400, reason="MICROSERVICE_BAD_DATA") from None
        # The fused model holds no tensors that require gradients: no grad-mode context is needed.
        probabilities = served.model(torch.from_numpy(parsed.images)).softmax(dim=1).numpy()
        counts = np.bincount(probabilities.argmax(axis=1), minlength=NUM_CLASSES)
        meta = {"tags": {"model_version": served.version}, "metrics": self.metrics(counts)}
        if parsed.puid:
            meta["puid"] = parsed.puid
        if is_proto:
            return _proto_response(parsed, probabilities, meta)
        return _json_response(parsed, probabilities, meta)


def _json_response(parsed: ParsedRequest, probabilities: np.ndarray, meta: dict) -> dict:
    if parsed.form == "tensor":
        data = {
            "names": CLASS_NAMES,
            "tensor": {"shape": list(probabilities.shape), "values": probabilities.ravel().tolist()},
        }
    else:
        data = {"names": CLASS_NAMES, "ndarray": probabilities.tolist()}
    return {"data": data, "meta": meta}


def _proto_response(parsed: ParsedRequest, probabilities: np.ndarray, meta: dict) -> prediction_pb2.SeldonMessage:
    return prediction_pb2.SeldonMessage(
        data=array_to_grpc_datadef(parsed.form, probabilities.astype(np.float64), CLASS_NAMES),
        meta=json_format.ParseDict(meta, prediction_pb2.Meta()),
    )
