"""KServe model `mnist`: the thin KServe adapter over the serving core (digit_classifier).

Served by kserve's ModelServer (serve_mnist.py) on the V1 protocol
(`/v1/models/mnist:predict`) and the Open Inference Protocol V2
(`/v2/models/mnist/infer`, `/v2/models/mnist/ready`, `/v2/models/mnist`), with
the same inputs, probabilities, 4xx semantics, hot swap and metrics as the Seldon
class MnistClassifier: both hold one DigitClassifier.
"""

import kserve
from digit_classifier import (
    CLASS_NAMES,
    DEFAULT_MODEL_ROOT,
    DEFAULT_POLL_INTERVAL_S,
    VERSION_LABEL,
    DigitClassifier,
    ModelUnavailableError,
    VersionReports,
)
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve_requests import v1_images, v2_images
from prometheus_client import Counter, Gauge, disable_created_metrics
from request_validation import DEFAULT_MAX_BATCH, InvalidInputError

from mnist_ddp.model import NUM_CLASSES

MODEL_NAME = "mnist"
OUTPUT_NAME = "probabilities"
# The same series as Seldon's /metrics: prometheus_client adds the _total of a counter, and no _created series.
disable_created_metrics()
PREDICTIONS = Counter("mnist_predictions", "Predictions per predicted class", ["class"])
SERVED_VERSION = Gauge("mnist_model_version_info", "1 for the version served, 0 for one it replaced", [VERSION_LABEL])


class MnistModel(kserve.Model):
    """Probabilities of the ten digits for 28x28 images or PNG/JPEG drawings, from the newest published version."""

    def __init__(
        self,
        name: str = MODEL_NAME,
        model_root: str = DEFAULT_MODEL_ROOT,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        max_batch: int = DEFAULT_MAX_BATCH,
    ):
        super().__init__(name)
        self.core = DigitClassifier(model_root, poll_interval_s, max_batch)
        self._versions = VersionReports()

    def load(self) -> bool:
        """Start following the model root; the model is registered at once and answers 503 until a version is served.

        ModelServer refuses to start without a ready model, while the pod must start before the
        trainer has published one: readiness is `healthy()`, which says why it is not ready.
        """
        self.core.start()
        self.ready = True
        return self.ready

    async def healthy(self) -> bool:
        """True while a verified model is served; otherwise ModelNotReady (503) with the reason."""
        try:
            self.core.served()
        except ModelUnavailableError as exc:
            raise ModelNotReady(self.name, str(exc)) from None
        self._report_version()
        return True

    def _report_version(self) -> None:
        for version, value in self._versions.changes(self.core.current):
            SERVED_VERSION.labels(version).set(value)

    def get_input_types(self) -> list[dict]:
        """V2 model metadata: pixels as FP32, or images as BYTES (base64 PNG/JPEG), any input name."""
        return [
            {"name": "images", "datatype": "FP32", "shape": [-1, 784]},
            {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict]:
        """V2 model metadata: probabilities (n, 10) of the digits 0-9."""
        return [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}]

    def predict(self, payload: dict | InferRequest, headers: dict | None = None) -> dict | InferResponse:
        """Answer a V1 body (dict) or a V2 InferRequest with probabilities (n, 10) named "0".."9"."""
        is_v2 = isinstance(payload, InferRequest)
        try:
            if is_v2:
                images = v2_images(payload.inputs, self.core.max_batch)
            else:
                images = v1_images(payload, self.core.max_batch)
            answer = self.core.classify(images)
        except InvalidInputError as exc:
            raise InvalidInput(str(exc)) from None
        except ModelUnavailableError as exc:
            raise ModelNotReady(self.name, str(exc)) from None
        for name, count in zip(CLASS_NAMES, answer.counts, strict=True):
            if count:
                PREDICTIONS.labels(name).inc(int(count))
        self._report_version()
        probabilities = answer.probabilities
        if not is_v2:
            return {"predictions": probabilities.tolist(), "names": CLASS_NAMES, "model_version": answer.version}
        output = InferOutput(
            name=OUTPUT_NAME,
            shape=list(probabilities.shape),
            datatype="FP32",
            data=probabilities.ravel().tolist(),
            parameters={"names": ",".join(CLASS_NAMES)},
        )
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=answer.version,
            infer_outputs=[output],
        )
