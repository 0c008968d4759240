"""Decode KServe V1 and Open Inference Protocol V2 requests into a checked model input.

V1 (`POST /v1/models/mnist:predict`), one of:
  {"instances": [[784 numbers], ...]}      or instances of 28x28 or 1x28x28 nested lists
  {"instances": [{"b64": "<base64 PNG or JPEG>"}, ...]}
V2 (`POST /v2/models/mnist/infer`), exactly one input tensor:
  FP32 (or another numeric datatype) of shape [n, 784], [n, 28, 28] or [n, 1, 28, 28], data flat or nested
  BYTES of shape [n] (or [n, 1]): each element the base64 of a PNG or JPEG
The checks themselves are the server-agnostic ones of request_validation, as on Seldon.
"""

import math

import numpy as np
from request_validation import (
    InvalidInputError,
    check_batch_size,
    check_images,
    check_shape,
    decode_base64,
    image_input,
    mismatch_message,
    numeric_array,
)

EXPECTED_V1 = (
    'a JSON object {"instances": [...]}: n images as lists of shape (784), (28, 28) or (1, 28, 28),'
    ' values in [0, 1], white digit on black, or n objects {"b64": "<base64 PNG or JPEG>"}'
)
EXPECTED_V2 = (
    'a JSON object {"inputs": [{"name": "images", "datatype": "FP32", "shape": [n, 784], "data": [...]}]}'
    " (shape [n, 784], [n, 28, 28] or [n, 1, 28, 28], values in [0, 1], white digit on black)"
    ' or {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [n], "data": ["<base64 PNG or JPEG>", ...]}]}'
)
NUMERIC_DATATYPES = ("FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def _images_from_base64(items: list, max_batch: int, what: str) -> np.ndarray:
    if not items:
        raise InvalidInputError(f"{what} is empty: expected at least one PNG or JPEG")
    check_batch_size(len(items), max_batch)
    images = [image_input(decode_base64(item, f"{what}[{i}]"), f"{what}[{i}]") for i, item in enumerate(items)]
    return np.concatenate(images)


def v1_images(body: object, max_batch: int) -> np.ndarray:
    """Validate a V1 body (already parsed from JSON); return float32 (n, 1, 28, 28)."""
    if isinstance(body, bytes | str):
        raise InvalidInputError(f"the body is not JSON: expected Content-Type application/json and {EXPECTED_V1}")
    if not isinstance(body, dict):
        raise InvalidInputError(f"the body is a JSON {type(body).__name__}: expected {EXPECTED_V1}")
    if "instances" not in body:
        present = ", ".join(sorted(str(key) for key in body))[:200] or "nothing"
        raise InvalidInputError(f"the body holds {present}: expected {EXPECTED_V1}")
    instances = body["instances"]
    if isinstance(instances, list) and instances and all(isinstance(item, dict) for item in instances):
        if not all(set(item) == {"b64"} for item in instances):
            raise InvalidInputError(f"each instance object must hold only b64: expected {EXPECTED_V1}")
        return _images_from_base64([item["b64"] for item in instances], max_batch, "instances")
    return check_images(numeric_array(instances, "instances"), max_batch)


def v2_images(inputs: list, max_batch: int) -> np.ndarray:
    """Validate the inputs of a V2 request, each with .name, .datatype, .shape and .data (kserve's InferInput)."""
    if len(inputs) != 1:
        raise InvalidInputError(f"the request has {len(inputs)} input tensors: expected exactly one, {EXPECTED_V2}")
    (tensor,) = inputs
    what = f"input {tensor.name!r:.60}"
    shape = check_shape(list(tensor.shape), f"{what} shape")
    data = tensor.data
    if tensor.datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInputError(f"{what} is BYTES of shape {shape}: expected shape [n], one image per element")
        items = bytes_elements(data, what)
        if len(items) != shape[0]:
            raise InvalidInputError(mismatch_message(shape, f"{what} shape", len(items), "its data"))
        return _images_from_base64(items, max_batch, f"{what} data")
    if tensor.datatype not in NUMERIC_DATATYPES:
        raise InvalidInputError(f"{what} has datatype {tensor.datatype!r:.40}: expected FP32 pixels or BYTES images")
    array = numeric_array(data, f"{what} data").ravel()
    if math.prod(shape) != array.size:
        raise InvalidInputError(mismatch_message(shape, f"{what} shape", array.size, "its data"))
    return check_images(array.reshape(shape), max_batch)


def bytes_elements(data: object, what: str) -> list:
    """The elements of a BYTES tensor: a flat list (a nested [[...]] of shape [n, 1] is flattened)."""
    if not isinstance(data, list):
        raise InvalidInputError(f"{what} data is a {type(data).__name__}: expected a list of base64 strings")
    return [item[0] if isinstance(item, list) and len(item) == 1 else item for item in data]
