"""Bad prediction requests and the text their 400 must carry: one table for the parsers and the live server.

test_serving_request_validation.py feeds every row to the parsers in-process (milliseconds);
test_serving_microservice.py sends the same rows to the real microservice over REST and gRPC.
"""

import base64
import io

import numpy as np
from google.protobuf import json_format, struct_pb2
from PIL import Image
from request_validation import MAX_IMAGE_BYTES
from seldon_core.proto import prediction_pb2

ONE_IMAGE = [[0.0] * 784]


def image_bytes(size=(10, 10), colour=0, image_format="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, colour).save(buffer, format=image_format)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def one_image_with(first: float) -> list[list[float]]:
    return [[first] + [0.0] * 783]


def tensor(shape, values) -> dict:
    return {"data": {"tensor": {"shape": shape, "values": values}}}


# (id, JSON body as parsed, text the message must contain)
BAD_JSON_BODIES = [
    ("json-list", [1, 2, 3], "the body is a JSON list: expected a JSON object"),
    ("json-string", "seven", "the body is a JSON str: expected a JSON object"),
    ("no-input", {"meta": {}}, "no input: expected"),
    ("strData", {"strData": "seven"}, "strData is not supported"),
    ("jsonData", {"jsonData": {"pixels": []}}, "jsonData is not supported"),
    ("customData", {"customData": "AAAA"}, "customData is not supported"),
    ("two-inputs", {"data": {"ndarray": ONE_IMAGE}, "binData": b64(image_bytes())}, "expected exactly one input"),
    ("data-list", {"data": [1, 2]}, "data is a JSON list: expected"),
    ("data-tftensor", {"data": {"tftensor": {}}}, "data holds tftensor: expected"),
    ("data-names-only", {"data": {"names": ["pixels"]}}, "data holds nothing: expected"),
    ("data-ndarray-and-tensor", {"data": {"ndarray": ONE_IMAGE, "tensor": {"shape": [1, 784], "values": [0.0] * 784}}},
     "data has both ndarray and tensor: expected exactly one"),
    ("empty-ndarray", {"data": {"ndarray": []}}, "the input is empty"),
    ("empty-rows", {"data": {"ndarray": [[]]}}, "the input is empty"),
    ("shape-783", {"data": {"ndarray": [[0.0] * 783]}}, "(1, 783) is not (n, 784)"),
    ("shape-1d", {"data": {"ndarray": [0.0] * 784}}, "(784) is not (n, 784), (n, 28, 28)"),
    ("shape-28x27", {"data": {"ndarray": np.zeros((2, 28, 27)).tolist()}}, "(2, 28, 27) is not"),
    ("pixels-0-255", {"data": {"ndarray": [[255.0] * 784]}}, "expected values in [0, 1]"),
    ("negative", {"data": {"ndarray": [[-0.5] * 784]}}, "expected values in [0, 1]"),
    ("nan", {"data": {"ndarray": one_image_with(float("nan"))}}, "NaN or infinity"),
    ("infinity", {"data": {"ndarray": one_image_with(float("inf"))}}, "NaN or infinity"),
    ("strings", {"data": {"ndarray": [["0"] * 784]}}, "non-numbers: expected only numbers"),
    ("booleans", {"data": {"ndarray": [[True] * 784]}}, "non-numbers"),
    ("nulls", {"data": {"ndarray": [[None] * 784]}}, "non-numbers"),
    ("ragged", {"data": {"ndarray": [[0.0] * 784, [0.0] * 700]}}, "ragged"),
    ("ndarray-number", {"data": {"ndarray": 0.5}}, "data.ndarray is a float: expected a list of numbers"),
    ("batch-too-large", {"data": {"ndarray": np.zeros((65, 784)).tolist()}}, "65 images is too large: at most 64"),
    ("tensor-count", tensor([1, 784], [0.0] * 10), "needs 784 values but data.tensor.values has 10"),
    ("tensor-no-values", {"data": {"tensor": {"shape": [1, 784]}}}, '{"shape": [n, 784]'),
    ("tensor-a-list", {"data": {"tensor": [1, 784]}}, '{"shape": [n, 784]'),
    ("tensor-shape-strings", tensor(["1", "784"], [0.0] * 784), "expected a list of integers"),
    ("tensor-shape-booleans", tensor([True, 784], [0.0] * 784), "shape is [True, 784]: expected a list of integers"),
    ("tensor-shape-number", tensor(784, [0.0] * 784), "data.tensor.shape is 784: expected a list of integers"),
    # The product of the dimensions matches the values: only the sign check stands between this and numpy.
    ("tensor-shape-negative", tensor([-1, -784], [0.0] * 784), "data.tensor.shape [-1, -784] has a negative dimension"),
    ("tensor-shape-one-negative", tensor([-1, 784], [0.0] * 784), "has a negative dimension"),
    ("tensor-values-nested", tensor([1, 784], ONE_IMAGE), "data.tensor.values must be a flat list"),
    ("tensor-values-string", tensor([1, 784], "zeros"), "data.tensor.values is a str: expected a list of numbers"),
    ("tensor-values-nan", tensor([1, 784], one_image_with(float("nan"))[0]), "NaN or infinity"),
    ("tensor-shape-28x27", tensor([1, 28, 27], [0.0] * 756), "(1, 28, 27) is not (n, 784)"),
    ("bindata-not-base64", {"binData": "not base64!"}, "not valid base64"),
    ("bindata-number", {"binData": 12}, "base64 string of PNG or JPEG"),
    ("bindata-garbage", {"binData": b64(b"garbage bytes")}, "not a PNG or JPEG image"),
    ("bindata-gif", {"binData": b64(image_bytes(image_format="GIF"))}, "GIF image: expected PNG or JPEG"),
    ("bindata-blank", {"binData": b64(image_bytes(colour=255))}, "blank"),
    ("bindata-empty", {"binData": ""}, "binData is empty"),
]  # fmt: skip

# Rows too large to send to the live server on every run (the parsers see them in-process).
LARGE_JSON_BODIES = [
    ("bindata-too-large", {"binData": b64(b"\0" * (MAX_IMAGE_BYTES + 1))},
     f"binData is {MAX_IMAGE_BYTES + 1:,} bytes: expected at most {MAX_IMAGE_BYTES:,} bytes"),
]  # fmt: skip


def proto_tensor(shape, values) -> prediction_pb2.SeldonMessage:
    return prediction_pb2.SeldonMessage(
        data=prediction_pb2.DefaultData(tensor=prediction_pb2.Tensor(shape=shape, values=values))
    )


def proto_ndarray(rows) -> prediction_pb2.SeldonMessage:
    return json_format.ParseDict({"data": {"ndarray": rows}}, prediction_pb2.SeldonMessage())


# (id, gRPC SeldonMessage, text the message must contain)
BAD_PROTO_MESSAGES = [
    ("no-input", prediction_pb2.SeldonMessage(), "no input: expected"),
    ("strData", prediction_pb2.SeldonMessage(strData="seven"), "strData is not supported"),
    ("jsonData", prediction_pb2.SeldonMessage(jsonData=struct_pb2.Value(string_value="7")), "jsonData is not"),
    ("data-names-only", prediction_pb2.SeldonMessage(data=prediction_pb2.DefaultData(names=["pixels"])),
     "data holds nothing: expected"),
    ("data-tftensor", json_format.ParseDict({"data": {"tftensor": {}}}, prediction_pb2.SeldonMessage()),
     "data holds tftensor: expected"),
    ("tensor-count", proto_tensor([1, 784], [0.0] * 10), "needs 784 values but data.tensor.values has 10"),
    ("tensor-shape-negative", proto_tensor([-1, -784], [0.0] * 784), "has a negative dimension"),
    ("tensor-shape-783", proto_tensor([1, 783], [0.0] * 783), "(1, 783) is not (n, 784)"),
    ("tensor-nan", proto_tensor([1, 784], one_image_with(float("nan"))[0]), "NaN or infinity"),
    ("tensor-infinity", proto_tensor([1, 784], one_image_with(float("-inf"))[0]), "NaN or infinity"),
    ("tensor-pixels-0-255", proto_tensor([1, 784], [255.0] * 784), "range from 255 to 255: expected values in [0, 1]"),
    ("tensor-negative", proto_tensor([1, 784], [-0.5] * 784), "expected values in [0, 1]"),
    ("tensor-empty", proto_tensor([0, 784], []), "the input is empty"),
    ("tensor-batch-too-large", proto_tensor([65, 784], [0.0] * 65 * 784), "batch of 65 images is too large"),
    ("ndarray-strings", proto_ndarray([["0"] * 784]), "non-numbers: expected only numbers"),
    ("ndarray-booleans", proto_ndarray([[True] * 784]), "non-numbers"),
    ("ndarray-nulls", proto_ndarray([[None] * 784]), "non-numbers"),
    ("ndarray-ragged", proto_ndarray([[0.0] * 784, [0.0] * 700]), "ragged"),
    ("ndarray-pixels-0-255", proto_ndarray([[255.0] * 784]), "expected values in [0, 1]"),
    ("ndarray-shape-1d", proto_ndarray([0.0] * 784), "(784) is not (n, 784)"),
    ("bindata-garbage", prediction_pb2.SeldonMessage(binData=b"garbage bytes"), "not a PNG or JPEG image"),
    ("bindata-empty", prediction_pb2.SeldonMessage(binData=b""), "binData is empty"),
    ("bindata-blank", prediction_pb2.SeldonMessage(binData=image_bytes(colour=255)), "blank"),
]  # fmt: skip

LARGE_PROTO_MESSAGES = [
    ("bindata-too-large", prediction_pb2.SeldonMessage(binData=b"\0" * (MAX_IMAGE_BYTES + 1)),
     f"binData is {MAX_IMAGE_BYTES + 1:,} bytes: expected at most {MAX_IMAGE_BYTES:,} bytes"),
]  # fmt: skip
