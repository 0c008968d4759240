"""Seldon Core v1 model class: classify MNIST digits with the model the trainer published on the shared volume.

Started by seldon-core 1.17.1 as

    seldon-core-microservice MnistClassifier --service-type MODEL

with `serving/` and `trainer/` on PYTHONPATH. Seldon builds one instance in the
main process and forks it into every gunicorn worker and gRPC process; each of
those calls `load()`, which starts following the model root. A thin adapter:
the work is digit_classifier's (shared with the KServe model); requests are
decoded by seldon_requests, Seldon's REST error handling is completed by
http_errors, and its per-request metrics bookkeeping is buffered by metrics_buffer.
"""

import logging

import metrics_buffer
import numpy as np
from digit_classifier import (
    CLASS_NAMES,
    DEFAULT_MODEL_ROOT,
    DEFAULT_POLL_INTERVAL_S,
    INPUT_DESCRIPTION,
    PREDICTIONS_METRIC,
    VERSION_LABEL,
    VERSION_METRIC,
    DigitClassifier,
    ModelUnavailableError,
    VersionReports,
)
from google.protobuf import json_format
from http_errors import RequestError, error_blueprint
from model_versions import LoadedModel, ModelWatcher
from request_validation import DEFAULT_MAX_BATCH, InvalidInputError
from seldon_core.proto import prediction_pb2
from seldon_core.utils import array_to_grpc_datadef
from seldon_requests import ParsedRequest, parse_json_request, parse_proto_request

from mnist_ddp.model import NUM_CLASSES

logger = logging.getLogger(__name__)


class MnistClassifier:
    """Serve probabilities of the ten digits for 28x28 images or PNG/JPEG drawings.

    Parameters (SeldonDeployment graph `parameters`, i.e. PREDICTIVE_UNIT_PARAMETERS):
      model_root       STRING  where the trainer publishes versions (default /mnt/pvc/models/mnist)
      poll_interval_s  FLOAT   how often LATEST is re-read for a new version (default 1.0)
      max_batch        INT     most images per request (default 64); also bounds the request body
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
        self._core = DigitClassifier(model_root, poll_interval_s, max_batch)
        self.metrics_flush_s = float(metrics_flush_s)
        if self.metrics_flush_s < 0:
            raise ValueError(f"metrics_flush_s is {metrics_flush_s}: expected 0 (unbuffered) or more seconds")
        if self.metrics_flush_s > 0:
            metrics_buffer.install(self.metrics_flush_s)
        self.model_error_handler = error_blueprint(self._core.max_batch, self._core.max_body_bytes)
        self._versions = VersionReports()

    @property
    def max_batch(self) -> int:
        """Most images per request."""
        return self._core.max_batch

    @property
    def _watcher(self) -> ModelWatcher | None:
        return self._core.watcher

    def load(self) -> None:
        """Start following the model root in this process (called by Seldon in each worker after the fork)."""
        self._core.start()
        served = self._core.current
        logger.info("MnistClassifier loaded: %s", served.version if served else self._core.watcher.problem)

    def _served(self) -> LoadedModel:
        try:
            return self._core.served()
        except ModelUnavailableError as exc:
            raise RequestError(str(exc), status_code=503, reason="MODEL_NOT_READY") from None

    def health_status(self) -> dict:
        """Readiness: the served version, or HTTP 503 while no verified model is loaded."""
        return {"status": "ok", "model_version": self._served().version}

    def tags(self) -> dict:
        """Seldon response tags: the served model version."""
        served = self._core.current
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
        metrics += [
            {"type": "GAUGE", "key": VERSION_METRIC, "value": value, "tags": {VERSION_LABEL: version}}
            for version, value in self._versions.changes(self._core.current)
        ]
        return metrics

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
                "architecture": INPUT_DESCRIPTION["architecture"],
                "input_shapes": INPUT_DESCRIPTION["input_shapes"],
                "input_values": INPUT_DESCRIPTION["input_values"],
                "bin_data": INPUT_DESCRIPTION["image_bytes"],
                "max_batch": str(self.max_batch),
                "output": INPUT_DESCRIPTION["output"],
            },
        }

    def predict_raw(self, request):
        """Answer a REST body (dict) or gRPC SeldonMessage with probabilities (n, 10) named "0".."9"."""
        self._served()
        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        try:
            if is_proto:
                parsed = parse_proto_request(request, self.max_batch)
            else:
                parsed = parse_json_request(request, self.max_batch)
            answer = self._core.classify(parsed.images)
        except InvalidInputError as exc:
            raise RequestError(str(exc), status_code=400, reason="MICROSERVICE_BAD_DATA") from None
        except ModelUnavailableError as exc:
            raise RequestError(str(exc), status_code=503, reason="MODEL_NOT_READY") from None
        meta = {"tags": {"model_version": answer.version}, "metrics": self.metrics(answer.counts)}
        if parsed.puid:
            meta["puid"] = parsed.puid
        if is_proto:
            return _proto_response(parsed, answer.probabilities, meta)
        return _json_response(parsed, answer.probabilities, meta)


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
