"""The part of the model server that knows no server: parameters, the followed model, the forward pass.

Both adapters hold one DigitClassifier: the Seldon class (MnistClassifier.py) and the
KServe model (kserve_predictor/mnist_model.py). They only translate their server's
requests, answers, errors and metrics to and from it, so the two cannot drift apart.
"""

import gc
import threading
from dataclasses import dataclass

import numpy as np
import torch
from model_versions import LoadedModel, ModelWatcher
from request_validation import DEFAULT_MAX_BATCH, max_body_bytes

from mnist_ddp.model import ARCHITECTURE, NUM_CLASSES

DEFAULT_MODEL_ROOT = "/mnt/pvc/models/mnist"
DEFAULT_POLL_INTERVAL_S = 1.0
MAX_BATCH_LIMIT = 1024
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]
PREDICTIONS_METRIC = "mnist_predictions_total"
VERSION_METRIC = "mnist_model_version_info"
# Seldon's own labels on every metric include `model_version` (the image tag), which would win.
VERSION_LABEL = "served_version"
INPUT_DESCRIPTION = {
    "architecture": ARCHITECTURE,
    "input_shapes": "(n, 784), (n, 28, 28) or (n, 1, 28, 28)",
    "input_values": "[0, 1], white digit on black, as in MNIST",
    "image_bytes": "PNG or JPEG of one digit, any size, grayscale, RGB or RGBA",
    "output": "probabilities (n, 10) of the digits 0-9",
}


class ModelUnavailableError(RuntimeError):
    """No verified model is loaded in this process (yet); the message says why."""


@dataclass(frozen=True)
class Classified:
    """The answer to one request: probabilities (n, 10), the version that computed them, the count per class."""

    probabilities: np.ndarray
    version: str
    counts: np.ndarray


class DigitClassifier:
    """Follows the model root and classifies checked batches of 28x28 images."""

    def __init__(
        self,
        model_root: str = DEFAULT_MODEL_ROOT,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        max_batch: int = DEFAULT_MAX_BATCH,
    ):
        # Only checks and stores: Seldon builds its object before forking the workers.
        self.model_root = str(model_root)
        self.poll_interval_s = float(poll_interval_s)
        self.max_batch = int(max_batch)
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s is {poll_interval_s}: expected a positive number of seconds")
        if not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise ValueError(f"max_batch is {max_batch}: expected 1 to {MAX_BATCH_LIMIT}")
        self.max_body_bytes = max_body_bytes(self.max_batch)
        self.watcher: ModelWatcher | None = None

    def start(self) -> None:
        """Start following the model root in this process (after any fork)."""
        # One request holds one image or a small batch: parallelism comes from the workers, and one
        # intra-op thread per worker keeps them from fighting over the cores.
        torch.set_num_threads(1)
        self.watcher = ModelWatcher(self.model_root, self.poll_interval_s)
        self.watcher.start()
        # torch and the web framework leave some 200k objects that the collector would otherwise scan in
        # every full collection: a pause of tens to hundreds of milliseconds in the middle of requests.
        # Frozen, they are left out of collection (they are still freed when no longer referenced).
        gc.freeze()

    @property
    def current(self) -> LoadedModel | None:
        """The served model, without looking for one."""
        return self.watcher.current if self.watcher else None

    def served(self) -> LoadedModel:
        """The served model; raise ModelUnavailableError while there is none."""
        served = self.watcher.current_or_check() if self.watcher else None
        if served is None:
            problem = self.watcher.problem if self.watcher else "load() has not run in this process"
            raise ModelUnavailableError(f"no model to serve yet: {problem}")
        return served

    def classify(self, images: np.ndarray) -> Classified:
        """Probabilities for a checked float32 batch (n, 1, 28, 28), from the model served when it starts."""
        served = self.served()
        # The fused model holds no tensors that require gradients: no grad-mode context is needed.
        probabilities = served.model(torch.from_numpy(images)).softmax(dim=1).numpy()
        counts = np.bincount(probabilities.argmax(axis=1), minlength=NUM_CLASSES)
        return Classified(probabilities, served.version, counts)


class VersionReports:
    """Which version gauges to report: 1 for the served version and, once, 0 for the one it replaced."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reported: str | None = None

    def changes(self, served: LoadedModel | None) -> list[tuple[str, int]]:
        """(version, value) pairs to set now."""
        if served is None:
            return []
        with self._lock:
            reports = []
            if self._reported not in (None, served.version):
                reports.append((self._reported, 0))
            self._reported = served.version
            reports.append((served.version, 1))
            return reports
