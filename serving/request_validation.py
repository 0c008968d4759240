"""Check a model input, whichever server and protocol it came by, and bound what one request may cost.

Server-agnostic: each adapter decodes its own wire format (Seldon's `data`/`binData`,
KServe's V1 `instances` and V2 `inputs`) and hands the pieces to the functions below:
  numeric_array   nested lists of numbers -> an array
  shaped_array    a flat list of numbers and a claimed shape -> an array
  check_images    an array of shape (n, 784), (n, 28, 28) or (n, 1, 28, 28) -> float32 (n, 1, 28, 28)
  image_input     PNG/JPEG bytes -> float32 (1, 1, 28, 28), MNIST-style
  decode_base64   base64 text -> bytes
Pixel values are in [0, 1], white digit on black, as in MNIST. Anything else
raises InvalidInputError with a message that says what was expected.
"""

import base64
import binascii
import math

import numpy as np
from image_preprocessing import ImageError, image_to_mnist

DEFAULT_MAX_BATCH = 64
IMAGE_SHAPES = ((784,), (28, 28), (1, 28, 28))
SHAPES_TEXT = "(n, 784), (n, 28, 28) or (n, 1, 28, 28)"
# A PNG/JPEG of a hand-drawn digit is kilobytes; this bounds the work one request can cause.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
# A JSON number as clients write a pixel ("0.12345678901234568, "): generous, so no valid batch is refused.
MAX_BYTES_PER_VALUE = 24
# Room for the envelope around the numbers: names, shapes, meta, whitespace.
BODY_OVERHEAD_BYTES = 64 * 1024
# The deepest valid nesting of pixel lists, (n, 1, 28, 28); checked before numpy sees the lists.
MAX_LIST_DEPTH = 4


class InvalidInputError(ValueError):
    """The request cannot be served as sent; the message says what was expected."""


def max_body_bytes(max_batch: int) -> int:
    """The largest request body worth reading: a full batch of numbers or one base64 image, whichever is larger."""
    numbers = max_batch * 784 * MAX_BYTES_PER_VALUE
    image = math.ceil(MAX_IMAGE_BYTES / 3) * 4
    return max(numbers, image) + BODY_OVERHEAD_BYTES


def body_too_large_message(size: int | None, limit: int, max_batch: int) -> str:
    """What a client is told when its body is over max_body_bytes(max_batch)."""
    size_text = f"{size:,} bytes" if size is not None else "larger than the limit"
    return (
        f"the request body is {size_text}: expected at most {limit:,} bytes"
        f" (up to {max_batch} images of 28x28 numbers, or one PNG/JPEG of at most {MAX_IMAGE_BYTES:,} bytes)"
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _too_many(n: int, max_batch: int) -> str:
    return f"batch of {n} images is too large: at most {max_batch} per request (expected 1 to {max_batch} images)"


def check_batch_size(n: int, max_batch: int) -> None:
    """Refuse more than max_batch images (before any of them is decoded)."""
    if n > max_batch:
        raise InvalidInputError(_too_many(n, max_batch))


def check_images(array: np.ndarray, max_batch: int) -> np.ndarray:
    """Check shape, batch size and values of a numeric array; return float32 (n, 1, 28, 28)."""
    if array.size == 0:
        raise InvalidInputError(f"the input is empty (shape {_shape_text(array.shape)}): expected at least one image")
    if array.ndim < 2 or array.shape[1:] not in IMAGE_SHAPES:
        raise InvalidInputError(
            f"input shape {_shape_text(array.shape)} is not {SHAPES_TEXT}: expected n images of 28x28 pixels"
        )
    if array.shape[0] > max_batch:
        raise InvalidInputError(_too_many(array.shape[0], max_batch))
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


def _list_depth(values: list) -> int:
    depth = 0
    while isinstance(values, list):
        depth += 1
        if depth > MAX_LIST_DEPTH or not values:
            break
        values = values[0]
    return depth


def numeric_array(values: object, what: str) -> np.ndarray:
    """Turn nested lists of numbers into an array; `what` names the field in messages."""
    if not isinstance(values, list):
        raise InvalidInputError(f"{what} is a {type(values).__name__}: expected a list of numbers")
    if _list_depth(values) > MAX_LIST_DEPTH:
        raise InvalidInputError(f"{what} is nested more than {MAX_LIST_DEPTH} lists deep: expected shape {SHAPES_TEXT}")
    try:
        array = np.array(values)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInputError(f"{what} is a ragged list: expected a rectangular array of numbers") from None
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what} holds non-numbers: expected only numbers in [0, 1]")
    return array


def check_shape(shape: object, what: str) -> list[int]:
    """A claimed tensor shape: a list of non-negative integers (booleans are not integers here)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInputError(f"{what} is {_short(shape)}: expected a list of integers such as [1, 784]")
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"{what} {_short(shape)} has a negative dimension: expected a shape such as [1, 784]")
    return shape


def shaped_array(shape: object, values: object, what_shape: str, what_values: str) -> np.ndarray:
    """A flat list of numbers in the claimed shape; the claim is checked against the count before any reshape."""
    shape = check_shape(shape, what_shape)
    array = numeric_array(values, what_values)
    if array.ndim != 1:
        raise InvalidInputError(f"{what_values} must be a flat list of numbers (the shape is given separately)")
    if math.prod(shape) != array.size:
        raise InvalidInputError(mismatch_message(shape, what_shape, array.size, what_values))
    return array.reshape(shape)


def mismatch_message(shape: list[int], what_shape: str, count: int, what_values: str) -> str:
    """A claimed shape that the number of values does not fill."""
    return (
        f"{what_shape} {_short(shape)} needs {math.prod(shape)} values but {what_values} has {count}:"
        " expected one value per element of the shape, such as [1, 784] with 784 values"
    )


def decode_base64(encoded: object, what: str) -> bytes:
    """Strict base64 (no stray characters) of PNG or JPEG bytes."""
    if not isinstance(encoded, str | bytes):
        raise InvalidInputError(f"{what} is a {type(encoded).__name__}: expected a base64 string of PNG or JPEG bytes")
    if len(encoded) > math.ceil(MAX_IMAGE_BYTES / 3) * 4:
        raise InvalidInputError(f"{what} is {len(encoded):,} characters: expected at most {MAX_IMAGE_BYTES:,} bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not valid base64: expected a base64-encoded PNG or JPEG") from None


def image_input(data: bytes, what: str = "binData") -> np.ndarray:
    """Validate and preprocess PNG/JPEG bytes into a batch of one MNIST-style image."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"{what} is {len(data):,} bytes: expected at most {MAX_IMAGE_BYTES:,} bytes")
    try:
        return image_to_mnist(data, what).reshape(1, 1, 28, 28)
    except ImageError as exc:
        raise InvalidInputError(str(exc)) from None
