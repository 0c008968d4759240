"""The real seldon-core-microservice over REST and gRPC: every input form, bad requests, metrics."""

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
from bad_requests import BAD_JSON_BODIES, BAD_PROTO_MESSAGES, ONE_IMAGE
from model_fixtures import draw_digit, encode
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


@pytest.mark.parametrize(
    ("request_message", "message"), [row[1:] for row in BAD_PROTO_MESSAGES], ids=[row[0] for row in BAD_PROTO_MESSAGES]
)
def test_grpc_bad_request_carries_its_message(server, request_message, message):
    stub = server.grpc_stub()
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request_message, timeout=10)
    assert message in info.value.details()
    assert server.health().status_code == 200


def test_puid_is_echoed_over_rest_and_grpc(server, digits):
    images, _ = digits
    response = server.predict({"meta": {"puid": "req-7"}, "data": {"ndarray": images[:1].tolist()}})
    answer(response)
    assert response.json()["meta"]["puid"] == "req-7"
    message = prediction_pb2.SeldonMessage(
        data=prediction_pb2.DefaultData(tensor=prediction_pb2.Tensor(shape=[1, 784], values=images[0].ravel()))
    )
    message.meta.puid = "req-8"
    assert server.grpc_stub().Predict(message, timeout=10).meta.puid == "req-8"


def test_metadata_describes_inputs_and_outputs(server):
    metadata = requests.get(f"{server.url}/api/v1.0/metadata", timeout=10).json()
    assert {i["messagetype"] for i in metadata["inputs"]} == {"ndarray", "tensor", "binData"}
    assert metadata["outputs"][0]["schema"]["names"] == CLASS_NAMES


JSON_HEADERS = {"Content-Type": "application/json"}
# (id, keyword arguments of requests.post, expected status, text the message must contain): what only
# HTTP can get wrong, then every body of the parsers' table (bad_requests.py), sent as JSON.
BAD_REQUESTS = [
    ("text-plain", {"data": "hello", "headers": {"Content-Type": "text/plain"}}, 400, "expected application/json"),
    ("form-encoded", {"data": json.dumps({"data": {"ndarray": ONE_IMAGE}})}, 400, "expected application/json"),
    ("malformed-json", {"data": '{"data": {', "headers": JSON_HEADERS}, 400, "not valid JSON"),
    ("empty-body", {"data": b"", "headers": JSON_HEADERS}, 400, "not valid JSON"),
    ("multipart-not-json", {"files": {"data": (None, "not json")}}, 400, "form field is not valid JSON"),
    ("form-json-param-bad", {"data": {"json": "{oops"}}, 400, "form field is not valid JSON"),
    # json.dumps writes NaN and Infinity as JavaScript does; Seldon's JSON parser reads them.
    *[
        (name, {"data": json.dumps(body), "headers": JSON_HEADERS}, 400, message)
        for name, body, message in BAD_JSON_BODIES
    ],
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
