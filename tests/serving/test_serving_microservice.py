"""The real seldon-core-microservice over REST and gRPC: every input form, bad requests, metrics."""

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
from model_fixtures import draw_digit, encode
from PIL import Image
from seldon_core.proto import prediction_pb2
from support.synthetic_mnist import render_digits

from MnistClassifier import CLASS_NAMES

pytestmark = pytest.mark.slow


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def digits():
    images, labels = render_digits(8, seed=21)
    return images.astype(np.float32) / 255.0, labels


def answer(response: requests.Response) -> tuple[np.ndarray, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    data = body["data"]
    assert data["names"] == CLASS_NAMES
    if "tensor" in data:
        values = np.array(data["tensor"]["values"]).reshape(data["tensor"]["shape"])
    else:
        values = np.array(data["ndarray"])
    return values, body["meta"]["tags"]["model_version"]


def test_health_reports_the_served_version(server, served_root):
    response = server.health()
    assert response.status_code == 200
    assert response.json()["jsonData"]["model_version"] == (served_root / "LATEST").read_text().strip()


def test_rest_ndarray(server, digits):
    images, labels = digits
    probabilities, version = answer(server.predict({"data": {"ndarray": images.tolist()}}))
    assert probabilities.shape == (8, 10)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.75
    assert version.startswith("v")


def test_rest_tensor(server, digits):
    images, _ = digits
    body = {"data": {"tensor": {"shape": [8, 784], "values": images.ravel().tolist()}}}
    response = server.predict(body)
    assert "tensor" in response.json()["data"]
    probabilities, _ = answer(response)
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_rest_bindata_drawing(server, image_format):
    image = draw_digit(4, canvas=(480, 360), centre=(100, 280), size=80, mode="RGB")
    probabilities, _ = answer(server.predict({"binData": b64(encode(image, image_format))}))
    assert probabilities.shape == (1, 10)
    assert probabilities.argmax() == 4


def test_grpc_tensor_and_bindata(server, digits):
    images, labels = digits
    stub = server.grpc_stub()
    tensor = prediction_pb2.Tensor(shape=[8, 784], values=images.ravel().tolist())
    response = stub.Predict(prediction_pb2.SeldonMessage(data=prediction_pb2.DefaultData(tensor=tensor)), timeout=10)
    probabilities = np.array(response.data.tensor.values).reshape(list(response.data.tensor.shape))
    assert probabilities.shape == (8, 10)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.75
    assert list(response.data.names) == CLASS_NAMES
    assert response.meta.tags["model_version"].string_value.startswith("v")

    png = encode(draw_digit(0, size=150))
    response = stub.Predict(prediction_pb2.SeldonMessage(binData=png), timeout=10)
    assert np.argmax(response.data.tensor.values) == 0


def test_grpc_bad_request_carries_its_message(server):
    stub = server.grpc_stub()
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(prediction_pb2.SeldonMessage(strData="seven"), timeout=10)
    assert "strData is not supported" in info.value.details()


def test_metadata_describes_inputs_and_outputs(server):
    metadata = requests.get(f"{server.url}/api/v1.0/metadata", timeout=10).json()
    assert {i["messagetype"] for i in metadata["inputs"]} == {"ndarray", "tensor", "binData"}
    assert metadata["outputs"][0]["schema"]["names"] == CLASS_NAMES


def image_b64(size=(10, 10), colour=0, image_format="PNG") -> str:
    return b64(encode(Image.new("L", size, colour), image_format))


ONE_IMAGE = [[0.0] * 784]
JSON_HEADERS = {"Content-Type": "application/json"}
# (id, keyword arguments of requests.post, expected status, text the message must contain)
BAD_REQUESTS = [
    ("text-plain", {"data": "hello", "headers": {"Content-Type": "text/plain"}}, 400, "expected application/json"),
    ("form-encoded", {"data": json.dumps({"data": {"ndarray": ONE_IMAGE}})}, 400, "expected application/json"),
    ("malformed-json", {"data": '{"data": {', "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    ("empty-body", {"data": b"", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    ("json-list", {"json": [1, 2, 3]}, 400, "the body is a JSON list: expected a JSON object"),
    ("json-string", {"json": "seven"}, 400, "the body is a JSON str: expected a JSON object"),
    ("no-input", {"json": {"meta": {}}}, 400, "no input: expected"),
    ("strData", {"json": {"strData": "seven"}}, 400, "strData is not supported"),
    ("jsonData", {"json": {"jsonData": {"pixels": []}}}, 400, "jsonData is not supported"),
    ("two-inputs", {"json": {"data": {"ndarray": ONE_IMAGE}, "binData": image_b64()}}, 400, "expected exactly one"),
    ("data-list", {"json": {"data": [1, 2]}}, 400, "data is a JSON list: expected"),
    ("data-tftensor", {"json": {"data": {"tftensor": {}}}}, 400, "data holds tftensor: expected"),
    ("empty-ndarray", {"json": {"data": {"ndarray": []}}}, 400, "empty"),
    ("empty-rows", {"json": {"data": {"ndarray": [[]]}}}, 400, "empty"),
    ("shape-783", {"json": {"data": {"ndarray": [[0.0] * 783]}}}, 400, "(1, 783) is not (n, 784)"),
    ("shape-1d", {"json": {"data": {"ndarray": [0.0] * 784}}}, 400, "(784) is not (n, 784), (n, 28, 28)"),
    ("shape-28x27", {"json": {"data": {"ndarray": np.zeros((2, 28, 27)).tolist()}}}, 400, "(2, 28, 27) is not"),
    ("pixels-0-255", {"json": {"data": {"ndarray": [[255.0] * 784]}}}, 400, "expected values in [0, 1]"),
    ("negative", {"json": {"data": {"ndarray": [[-0.5] * 784]}}}, 400, "expected values in [0, 1]"),
    (
        "nan",
        {"data": '{"data": {"ndarray": [[NaN' + ", 0" * 783 + "]]}}", "headers": JSON_HEADERS},
        400,
        "NaN or infinity",
    ),
    (
        "infinity",
        {"data": '{"data": {"ndarray": [[Infinity' + ", 0" * 783 + "]]}}", "headers": JSON_HEADERS},
        400,
        "NaN or infinity",
    ),
    ("strings", {"json": {"data": {"ndarray": [["0"] * 784]}}}, 400, "non-numbers: expected only numbers"),
    ("booleans", {"json": {"data": {"ndarray": [[True] * 784]}}}, 400, "non-numbers"),
    ("nulls", {"json": {"data": {"ndarray": [[None] * 784]}}}, 400, "non-numbers"),
    ("ragged", {"json": {"data": {"ndarray": [[0.0] * 784, [0.0] * 700]}}}, 400, "ragged"),
    ("ndarray-number", {"json": {"data": {"ndarray": 0.5}}}, 400, "expected a list of numbers"),
    (
        "tensor-count",
        {"json": {"data": {"tensor": {"shape": [1, 784], "values": [0.0] * 10}}}},
        400,
        "needs 784 values but data.tensor.values has 10",
    ),
    ("tensor-no-values", {"json": {"data": {"tensor": {"shape": [1, 784]}}}}, 400, '{"shape": [n, 784]'),
    (
        "tensor-shape-strings",
        {"json": {"data": {"tensor": {"shape": ["1", "784"], "values": [0.0] * 784}}}},
        400,
        "expected a list of integers",
    ),
    (
        "batch-too-large",
        {"json": {"data": {"ndarray": np.zeros((65, 784)).tolist()}}},
        400,
        "batch of 65 images is too large: at most 64",
    ),
    ("bindata-not-base64", {"json": {"binData": "not base64!"}}, 400, "not valid base64"),
    ("bindata-number", {"json": {"binData": 12}}, 400, "base64 string of PNG or JPEG"),
    ("bindata-garbage", {"json": {"binData": b64(b"garbage bytes")}}, 400, "not a PNG or JPEG image"),
    ("bindata-gif", {"json": {"binData": image_b64(image_format="GIF")}}, 400, "GIF image: expected PNG or JPEG"),
    ("bindata-blank", {"json": {"binData": image_b64(colour=255)}}, 400, "blank"),
    ("bindata-empty", {"json": {"binData": ""}}, 400, "binData is empty"),
    ("multipart-not-json", {"files": {"data": (None, "not json")}}, 400, "form field is not valid JSON"),
    ("form-json-param-bad", {"data": {"json": "{oops"}}, 400, "form field is not valid JSON"),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "message"), [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_request_gets_4xx_with_what_was_expected(server, kwargs, status, message):
    response = requests.post(server.predictions_url, timeout=10, **kwargs)
    assert response.status_code == status, response.text
    info = response.json()["status"]["info"]
    assert message in info
    assert server.health().status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1.0/predict"), ("GET", "/api/v1.0/predictions"), ("PUT", "/api/v1.0/predictions")],
)
def test_wrong_path_or_method_is_4xx_not_500(server, method, path):
    # Seldon serves static files from "/", so some unknown routes are 405 rather than 404.
    response = requests.request(method, f"{server.url}{path}", json={}, timeout=10)
    assert response.status_code in (404, 405)
    assert response.json()["status"]["info"]


def exported_predictions(server) -> tuple[float, str]:
    """The sum of mnist_predictions_total over classes and workers on /metrics, and the whole text."""
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    total = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mnist_predictions_total{")
    )
    return total, text


def wait_for_exported_predictions(server, expected: float, timeout: float = 5.0) -> str:
    """Poll /metrics until it counts `expected` predictions: workers hand over their metrics once a second."""
    deadline = time.monotonic() + timeout
    total, text = exported_predictions(server)
    while total != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        total, text = exported_predictions(server)
    assert total == expected, f"/metrics counts {total} predictions, expected {expected}"
    return text


def test_metrics_count_every_prediction_once(server, digits):
    images, _ = digits
    time.sleep(1.5)  # what earlier tests predicted has been handed over by now
    before, _ = exported_predictions(server)
    with ThreadPoolExecutor(4) as pool:
        batches = list(
            pool.map(lambda n: answer(server.predict({"data": {"ndarray": images[:n].tolist()}})), range(1, 9))
        )
    assert len(batches) == 8
    wait_for_exported_predictions(server, before + sum(range(1, 9)))


def test_server_healthy_after_bad_requests_and_metrics_exported(server, digits):
    assert server.health().status_code == 200
    time.sleep(1.5)
    before, _ = exported_predictions(server)
    answer(server.predict({"data": {"ndarray": digits[0][:2].tolist()}}))
    metrics = wait_for_exported_predictions(server, before + 2)
    assert 'mnist_predictions_total{class="' in metrics
    version = server.health().json()["jsonData"]["model_version"]
    served = [line for line in metrics.splitlines() if line.startswith("mnist_model_version_info{")]
    assert served and all(f'served_version="{version}"' in line for line in served)
    # Seldon logs every answer it turned into a 500 with this reason.
    assert "MICROSERVICE_INTERNAL_ERROR" not in server.output()
