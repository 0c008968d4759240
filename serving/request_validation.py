"""Turn a Seldon prediction request (REST JSON or gRPC SeldonMessage) into a checked model input.

Accepted, one per request:
  data.ndarray  nested lists of shape (n, 784), (n, 28, 28) or (n, 1, 28, 28)
  data.tensor   {"shape": [...], "values": [...]} with one of those shapes
  binData       a PNG or JPEG of one digit (base64 in JSON, raw bytes in gRPC)
Pixel values are in [0, 1], white digit on black, as in MNIST. Anything else
raises InvalidInputError with a message that says what was expected.
"""

import base64
import binascii
import math
from dataclasses import dataclass

import numpy as np
from google.protobuf import json_format
from image_preprocessing import ImageError, image_to_mnist

DEFAULT_MAX_BATCH = 64
IMAGE_SHAPES = ((784,), (28, 28), (1, 28, 28))
EXPECTED = (
    'a JSON object with one of "data": {"ndarray": [...]} or "data": {"tensor": {"shape": [...], "values": [...]}} '
    "(shape (n, 784), (n, 28, 28) or (n, 1, 28, 28), values in [0, 1], white digit on black) "
    'or "binData": "<base64 PNG or JPEG>"'
)
# A PNG/JPEG of a hand-drawn digit is kilobytes; this bounds the work one request can cause.
MAX_IMAGE_BYTES = 8 * 1024 * 1024


class InvalidInputError(ValueError):
    """The request cannot be served as sent; the message says what was expected."""


@dataclass(frozen=True)
class ParsedRequest:
    """A validated model input and how the answer should be encoded."""

    images: np.ndarray  # float32 (n, 1, 28, 28), values in [0, 1]
    form: str  # "ndarray" or "tensor": the DefaultData field of the response (binData: tensor, as Seldon does)
    puid: str | None = None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_images(array: np.ndarray, max_batch: int) -> np.ndarray:
    """Check shape, batch size and values of a numeric array; return float32 (n, 1, 28, 28)."""
    if array.size == 0:
        raise InvalidInputError(f"the input is empty (shape {_shape_text(array.shape)}): expected at least one image")
    if array.ndim < 2 or array.shape[1:] not in IMAGE_SHAPES:
        raise InvalidInputError(
            f"input shape {_shape_text(array.shape)} is not (n, 784), (n, 28, 28) or (n, 1, 28, 28)"
            " for n images of 28x28 pixels"
        )
    if array.shape[0] > max_batch:
        raise InvalidInputError(f"batch of {array.shape[0]} images is too large: at most {max_batch} per request")
    images = array.astype(np.float32, copy=False).reshape(-1, 1, 28, 28)
    if not np.isfinite(images).all():
        raise InvalidInputError("the input contains NaN or infinity: expected pixel values in [0, 1]")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise InvalidInputError(
            f"pixel values range from {low:g} to {high:g}: expected values in [0, 1]"
            " (divide 0-255 pixels by 255; white digit on black, as in MNIST)"
        )
    return images


def _numeric_array(values: object, what: str) -> np.ndarray:
    if not isinstance(values, list):
        raise InvalidInputError(f"{what} is a {type(values).__name__}: expected a list of numbers")
    try:
        array = np.array(values)
    except ValueError:
        raise InvalidInputError(f"{what} is a ragged list: expected a rectangular array of numbers") from None
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what} holds non-numbers: expected only numbers in [0, 1]")
    return array


def ndarray_input(ndarray: object, max_batch: int) -> np.ndarray:
    """Validate a data.ndarray payload (nested lists)."""
    return check_images(_numeric_array(ndarray, "data.ndarray"), max_batch)


def tensor_input(tensor: object, max_batch: int) -> np.ndarray:
    """Validate a data.tensor payload ({"shape": [...], "values": [...]})."""
    if not isinstance(tensor, dict) or "shape" not in tensor or "values" not in tensor:
        raise InvalidInputError('data.tensor must be an object {"shape": [n, 784], "values": [n*784 numbers]}')
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInputError(f"data.tensor.shape is {shape!r}: expected a list of integers such as [1, 784]")
    values = _numeric_array(tensor["values"], "data.tensor.values")
    if values.ndim != 1:
        raise InvalidInputError("data.tensor.values must be a flat list of numbers (the shape is given separately)")
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"data.tensor.shape {shape} has a negative dimension: expected sizes such as [1, 784]")
    if math.prod(shape) != values.size:
        raise InvalidInputError(
            f"data.tensor.shape {shape} needs {math.prod(shape)} values but data.tensor.values has {values.size}"
        )
    return check_images(values.reshape(shape), max_batch)


def image_input(data: bytes) -> np.ndarray:
    """Validate and preprocess binData bytes (PNG/JPEG) into a batch of one MNIST-style image."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"binData is {len(data):,} bytes: expected at most {MAX_IMAGE_BYTES:,} bytes")
    try:
        return image_to_mnist(data).reshape(1, 1, 28, 28)
    except ImageError as exc:
        raise InvalidInputError(str(exc)) from None


def _unsupported(field: str) -> InvalidInputError:
    return InvalidInputError(f"{field} is not supported by this model: expected {EXPECTED}")


def parse_json_request(request: object, max_batch: int = DEFAULT_MAX_BATCH) -> ParsedRequest:
    """Validate a REST request body (already parsed from JSON)."""
    if not isinstance(request, dict):
        raise InvalidInputError(f"the body is a JSON {type(request).__name__}: expected {EXPECTED}")
    meta = request.get("meta")
    puid = meta.get("puid") if isinstance(meta, dict) and isinstance(meta.get("puid"), str) else None
    payloads = [key for key in ("data", "binData", "strData", "jsonData", "customData") if key in request]
    if not payloads:
        raise InvalidInputError(f"the request has no input: expected {EXPECTED}")
    if len(payloads) > 1:
        raise InvalidInputError(f"the request has {' and '.join(payloads)}: expected exactly one input")
    field = payloads[0]
    if field == "binData":
        encoded = request["binData"]
        if not isinstance(encoded, str | bytes):
            raise InvalidInputError("binData must be a base64 string of PNG or JPEG bytes")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError("binData is not valid base64: expected a base64-encoded PNG or JPEG") from None
        return ParsedRequest(image_input(data), "tensor", puid)
    if field != "data":
        raise _unsupported(field)
    data = request["data"]
    if not isinstance(data, dict):
        raise InvalidInputError(f"data is a JSON {type(data).__name__}: expected {EXPECTED}")
    if "ndarray" in data and "tensor" in data:
        raise InvalidInputError("data has both ndarray and tensor: expected exactly one")
    if "ndarray" in data:
        return ParsedRequest(ndarray_input(data["ndarray"], max_batch), "ndarray", puid)
    if "tensor" in data:
        return ParsedRequest(tensor_input(data["tensor"], max_batch), "tensor", puid)
    present = ", ".join(sorted(k for k in data if k != "names")) or "nothing"
    raise InvalidInputError(f"data holds {present}: expected {EXPECTED}")


def parse_proto_request(message, max_batch: int = DEFAULT_MAX_BATCH) -> ParsedRequest:
    """Validate a gRPC SeldonMessage."""
    puid = message.meta.puid or None
    field = message.WhichOneof("data_oneof")
    if field is None:
        raise InvalidInputError(f"the request has no input: expected {EXPECTED}")
    if field == "binData":
        return ParsedRequest(image_input(message.binData), "tensor", puid)
    if field != "data":
        raise _unsupported(field)
    form = message.data.WhichOneof("data_oneof")
    if form == "ndarray":
        return ParsedRequest(ndarray_input(json_format.MessageToDict(message.data.ndarray), max_batch), form, puid)
    if form == "tensor":
        tensor = {"shape": list(message.data.tensor.shape), "values": list(message.data.tensor.values)}
        return ParsedRequest(tensor_input(tensor, max_batch), form, puid)
    raise InvalidInputError(f"data holds {form or 'nothing'}: expected {EXPECTED}")
