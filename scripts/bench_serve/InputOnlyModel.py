"""A Seldon model class that reads and checks the request as MnistClassifier does, then runs no model.

`bench_serve.py --floor` serves it with the same settings as ours: the difference to
ConstantModel is what decoding the 784 pixel values into a checked array costs, and
the difference to ours is what the model (and its metrics and answer) costs.
"""

from ConstantModel import CLASS_NAMES
from seldon_requests import parse_json_request


class InputOnlyModel:
    """Validates every prediction request like MnistClassifier, then answers with fixed probabilities."""

    def predict_raw(self, request) -> dict:
        """The request's images checked as MnistClassifier checks them; a fixed answer of the same shape."""
        images = parse_json_request(request).images
        return {"data": {"names": CLASS_NAMES, "ndarray": [[0.1] * 10] * len(images)}}
