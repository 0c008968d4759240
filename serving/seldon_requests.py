"""Decode a Seldon Core v1 prediction request (REST JSON or gRPC SeldonMessage) into a checked model input.

Accepted, one per request:
  data.ndarray  nested lists of shape (n, 784), (n, 28, 28) or (n, 1, 28, 28)
  data.tensor   {"shape": [...], "values": [...]} with one of those shapes
  binData       a PNG or JPEG of one digit (base64 in JSON, raw bytes in gRPC)
The checks themselves are the server-agnostic ones of request_validation.
"""

from dataclasses import dataclass

import numpy as np
from google.protobuf import json_format
from request_validation import (
    DEFAULT_MAX_BATCH,
    InvalidInputError,
    check_images,
    decode_base64,
    image_input,
    numeric_array,
    shaped_array,
)

EXPECTED = (
    'a JSON object with one of "data": {"ndarray": [...]} or "data": {"tensor": {"shape": [...], "values": [...]}} '
    "(shape (n, 784), (n, 28, 28) or (n, 1, 28, 28), values in [0, 1], white digit on black) "
    'or "binData": "<base64 PNG or JPEG>"'
)


@dataclass(frozen=True)
class ParsedRequest:
    """A validated model input and how the answer should be encoded."""

    images: np.ndarray  # float32 (n, 1, 28, 28), values in [0, 1]
    form: str  # "ndarray" or "tensor": the DefaultData field of the response (binData: tensor, as Seldon does)
    puid: str | None = None


def ndarray_input(ndarray: object, max_batch: int) -> np.ndarray:
    """Validate a data.ndarray payload (nested lists)."""
    return check_images(numeric_array(ndarray, "data.ndarray"), max_batch)


def tensor_input(tensor: object, max_batch: int) -> np.ndarray:
    """Validate a data.tensor payload ({"shape": [...], "values": [...]})."""
    if not isinstance(tensor, dict) or "shape" not in tensor or "values" not in tensor:
        raise InvalidInputError('data.tensor must be an object {"shape": [n, 784], "values": [n*784 numbers]}')
    array = shaped_array(tensor["shape"], tensor["values"], "data.tensor.shape", "data.tensor.values")
    return check_images(array, max_batch)


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
        return ParsedRequest(image_input(decode_base64(request["binData"], "binData")), "tensor", puid)
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
    present = ", ".join(sorted(str(k) for k in data if k != "names"))[:200] or "nothing"
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
