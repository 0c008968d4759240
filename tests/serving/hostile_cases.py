"""One table of hostile requests, each written for every protocol it applies to: Seldon, KServe V1, KServe V2.

A case builds the keyword arguments of `requests.post` for a protocol, or None where the
protocol has no such request (V1 has no claimed tensor shape, for instance). Every case
must be answered with `status` and a message that says what was expected (and holds
`fragment`, per protocol where the servers word it differently).
"""

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image
from support.hostile_images import hostile_images

PROTOCOLS = ("seldon", "v1", "v2")
JSON = {"Content-Type": "application/json"}
MB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """A hostile request: how to send it per protocol, what must come back."""

    id: str
    build: Callable[[str], dict | None]
    status: int
    fragment: str | dict[str, str] = ""

    def expected_fragment(self, protocol: str) -> str:
        return self.fragment.get(protocol, "") if isinstance(self.fragment, dict) else self.fragment


def raw(body: bytes | str, headers: dict | None = None) -> Callable[[str], dict]:
    """The same bytes on every protocol."""
    return lambda protocol: {"data": body, "headers": JSON if headers is None else headers}


def text(seldon: str, v1: str | None, v2: str | None) -> Callable[[str], dict | None]:
    """A JSON text (not produced by json.dumps: NaN literals, huge numbers) per protocol."""
    bodies = {"seldon": seldon, "v1": v1, "v2": v2}
    return lambda protocol: None if bodies[protocol] is None else {"data": bodies[protocol], "headers": JSON}


def pixels(values, v2_shape: list | None = None) -> Callable[[str], dict]:
    """Nested pixel lists as Seldon's data.ndarray, V1's instances, V2's FP32 data (shape as claimed or [1, 784])."""

    def build(protocol: str) -> dict:
        if protocol == "seldon":
            return {"json": {"data": {"ndarray": values}}}
        if protocol == "v1":
            return {"json": {"instances": values}}
        shape = v2_shape if v2_shape is not None else [1, 784]
        return {"json": {"inputs": [{"name": "images", "datatype": "FP32", "shape": shape, "data": values}]}}

    return build


def claimed(shape, values) -> Callable[[str], dict | None]:
    """A flat list of values with a claimed shape: Seldon's data.tensor, V2's input (V1 claims no shape)."""

    def build(protocol: str) -> dict | None:
        if protocol == "seldon":
            return {"json": {"data": {"tensor": {"shape": shape, "values": values}}}}
        if protocol == "v2":
            return {"json": {"inputs": [{"name": "images", "datatype": "FP32", "shape": shape, "data": values}]}}
        return None

    return build


def image_text(encoded) -> Callable[[str], dict]:
    """Base64 text (or anything in its place) as Seldon's binData, V1's {"b64": ...}, V2's BYTES element."""

    def build(protocol: str) -> dict:
        if protocol == "seldon":
            return {"json": {"binData": encoded}}
        if protocol == "v1":
            return {"json": {"instances": [{"b64": encoded}]}}
        return {"json": {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [encoded]}]}}

    return build


def image(data: bytes) -> Callable[[str], dict]:
    return image_text(base64.b64encode(data).decode())


def encoded(img: Image.Image, image_format: str) -> bytes:
    """The bytes of `img` saved as `image_format`."""
    buffer = io.BytesIO()
    img.save(buffer, format=image_format)
    return buffer.getvalue()


def per_protocol(**bodies: dict) -> Callable[[str], dict | None]:
    return lambda protocol: bodies.get(protocol)


ZERO_ROW = [0.0] * 784
ONE_IMAGE = [ZERO_ROW]


def deep_list(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


def wrap(protocol_key: str, inner: str) -> str:
    return f'{{"data": {{"ndarray": {inner}}}}}' if protocol_key == "seldon" else f'{{"instances": {inner}}}'


def v2_text(data: str, shape: str = "[1, 784]") -> str:
    tensor = f'{{"name": "images", "datatype": "FP32", "shape": {shape}, "data": {data}}}'
    return f'{{"inputs": [{tensor}]}}'


def row_with(first: str) -> str:
    return "[[" + first + ", 0" * 783 + "]]"


def flat_with(first: str) -> str:
    return "[" + first + ", 0" * 783 + "]"


CASES = [
    # --- the body as a whole ---
    Case("body-20mb", raw(b"[" + b"0," * (10 * MB) + b"0]"), 413, "expected at most"),
    Case(
        "body-20mb-chunked",
        lambda protocol: {"data": iter([b"[" + b"0," * MB] * 10 + [b"0]"]), "headers": JSON},
        413,
        "expected at most",
    ),
    Case("json-arrays-nested-100k-deep", raw(deep_list(100_000)), 400),
    Case("json-objects-nested-50k-deep", raw('{"a": ' * 50_000 + "1" + "}" * 50_000), 400),
    Case("json-malformed", raw('{"data": {'), 400, "not valid JSON"),
    Case("json-empty-body", raw(b""), 400),
    Case("json-not-utf8", raw(b'\xff\xfe{"a": 1}'), 400),
    Case("json-trailing-garbage", raw('{"instances": []} trailing'), 400, "not valid JSON"),
    Case("content-type-text-plain", raw(json.dumps({"a": 1}), {"Content-Type": "text/plain"}), 400, "application/json"),
    Case("content-type-xml", raw("<image/>", {"Content-Type": "application/xml"}), 400, "application/json"),
    Case("content-type-form", lambda protocol: {"data": {"instances": "1"}}, 400, "application/json"),
    Case("json-top-level-list", raw("[1, 2, 3]"), 400),
    Case("json-top-level-string", raw('"seven"'), 400),
    Case("json-top-level-null", raw("null"), 400),
    Case("json-top-level-number", raw("7"), 400),
    # --- numbers ---
    Case(
        "nan-literal",
        text(wrap("seldon", row_with("NaN")), wrap("v1", row_with("NaN")), v2_text(flat_with("NaN"))),
        400,
    ),
    Case(
        "infinity-literal",
        text(wrap("seldon", row_with("Infinity")), wrap("v1", row_with("Infinity")), v2_text(flat_with("Infinity"))),
        400,
    ),
    Case(
        "overflowing-exponent",
        text(wrap("seldon", row_with("1e999")), wrap("v1", row_with("1e999")), v2_text(flat_with("1e999"))),
        400,
    ),
    Case(
        "integer-of-400-digits",
        text(wrap("seldon", row_with("1" * 400)), wrap("v1", row_with("1" * 400)), v2_text(flat_with("1" * 400))),
        400,
    ),
    Case("pixels-as-strings", pixels([["0"] * 784]), 400, "non-numbers"),
    Case("pixels-as-booleans", pixels([[True] * 784]), 400, "non-numbers"),
    Case("pixels-as-nulls", pixels([[None] * 784]), 400, "non-numbers"),
    Case("pixels-as-objects", pixels([[{"v": 0}] * 784]), 400),
    Case("pixels-mixed", pixels([[0.0, "a", None, *([0.0] * 781)]]), 400),
    Case("pixels-0-255", pixels([[255.0] * 784]), 400, "expected values in [0, 1]"),
    Case("pixels-negative", pixels([[-0.5] * 784]), 400, "expected values in [0, 1]"),
    Case("pixels-ragged", pixels([ZERO_ROW, [0.0] * 700], [2, 784]), 400),
    Case(
        "pixels-nested-500-deep",
        text(wrap("seldon", deep_list(500)), wrap("v1", deep_list(500)), v2_text(deep_list(500))),
        400,
        "nested more than 4 lists deep",
    ),
    Case("pixels-not-a-list", pixels(0.5), 400),
    Case("pixels-empty", pixels([], [0, 784]), 400, "expected at least one image"),
    Case("shape-783", pixels([[0.0] * 783], [1, 783]), 400, "is not (n, 784)"),
    Case("batch-of-65", pixels([ZERO_ROW] * 65, [65, 784]), 400, "at most 64 per request"),
    # --- claimed shapes ---
    Case("dims-negative", claimed([-1, 784], ZERO_ROW), 400, "negative"),
    Case(
        "dims-boolean",
        claimed([True, True], ZERO_ROW),
        400,
        {"seldon": "expected a list of integers", "v2": "needs 1 values"},
    ),
    Case("dims-fractional", claimed([1.5, 784], ZERO_ROW), 400),
    Case("dims-words", claimed(["one", "784"], ZERO_ROW), 400),
    Case("dims-huge", claimed([10**9, 784], ZERO_ROW), 400, "needs 784000000000 values"),
    Case("dims-10000-of-them", claimed([1] * 10_000, ZERO_ROW), 400, "needs 1 values"),
    Case("dims-not-a-list", claimed(784, ZERO_ROW), 400),
    Case("dims-count-mismatch", claimed([2, 784], ZERO_ROW), 400, "needs 1568 values"),
    # --- images ---
    Case("image-bad-base64", image_text("not base64!"), 400, "not valid base64"),
    Case("image-not-a-string", image_text(12), 400),
    Case("image-empty", image_text(""), 400, "is empty"),
    Case("image-garbage", image(b"garbage bytes"), 400, "not a PNG or JPEG"),
    *(Case(f"image-{name}", image(data), 400) for name, data in hostile_images().items()),
    Case("image-gif", image(encoded(Image.new("L", (10, 10)), "GIF")), 400, "expected PNG or JPEG"),
    Case("image-bmp", image(encoded(Image.new("L", (10, 10)), "BMP")), 400, "expected PNG or JPEG"),
    Case("image-blank-1x1", image(encoded(Image.new("L", (1, 1), 255), "PNG")), 400, "expected a drawn digit"),
    Case("image-blank-jpeg", image(encoded(Image.new("L", (10, 10), 255), "JPEG")), 400, "expected a drawn digit"),
    # --- the protocols' envelopes ---
    Case(
        "no-input",
        per_protocol(seldon={"json": {"meta": {}}}, v1={"json": {"rows": []}}, v2={"json": {"inputs": []}}),
        400,
    ),
    Case(
        "two-inputs",
        per_protocol(
            seldon={"json": {"data": {"ndarray": ONE_IMAGE}, "binData": "AAAA"}},
            v2={
                "json": {
                    "inputs": [
                        {"name": f"x{i}", "datatype": "FP32", "shape": [1, 784], "data": ZERO_ROW} for i in (1, 2)
                    ]
                }
            },
        ),
        400,
        "expected exactly one",
    ),
    Case(
        "unsupported-payload",
        per_protocol(
            seldon={"json": {"strData": "seven"}},
            v1={"json": {"instances": [{"b64": "AAAA", "extra": 1}]}},
            v2={"json": {"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1, 784], "data": ZERO_ROW}]}},
        ),
        400,
    ),
    Case(
        "field-of-wrong-type",
        per_protocol(
            seldon={"json": {"data": [1, 2]}},
            v1={"json": {"instances": {"b64": "AAAA"}}},
            v2={"json": {"inputs": {"name": "x"}}},
        ),
        400,
    ),
]
