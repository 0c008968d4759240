"""The real KServe ModelServer with the model `mnist`: V1 and V2, every input form, Seldon's answers, metrics."""

import base64
import time

import numpy as np
import pytest
import requests
from kserve_server import KServeServer
from model_fixtures import draw_digit, encode
from seldon_server import SeldonServer
from support.synthetic_mnist import render_digits

from MnistClassifier import CLASS_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.kserve]


@pytest.fixture(scope="module")
def digits():
    images, labels = render_digits(8, seed=23)
    return images.astype(np.float32) / 255.0, labels


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v1_answer(response: requests.Response) -> tuple[np.ndarray, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["names"] == CLASS_NAMES
    return np.array(body["predictions"]), body["model_version"]


def v2_answer(response: requests.Response) -> tuple[np.ndarray, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    (output,) = body["outputs"]
    assert output["name"] == "probabilities"
    assert output["datatype"] == "FP32"
    assert output["parameters"]["names"].split(",") == CLASS_NAMES
    return np.array(output["data"]).reshape(output["shape"]), body["model_version"]


def v2_tensor(array: np.ndarray, nested: bool = False) -> dict:
    data = array.tolist() if nested else array.ravel().tolist()
    return {"inputs": [{"name": "images", "datatype": "FP32", "shape": list(array.shape), "data": data}]}


def test_ready_and_metadata(kserve, served_root):
    version = (served_root / "LATEST").read_text().strip()
    assert requests.get(f"{kserve.url}/v2/health/ready", timeout=10).json() == {"ready": True}
    assert kserve.ready().json() == {"name": "mnist", "ready": True}
    assert requests.get(f"{kserve.url}/v1/models/mnist", timeout=10).json() == {"name": "mnist", "ready": True}
    metadata = requests.get(f"{kserve.url}/v2/models/mnist", timeout=10).json()
    assert metadata["name"] == "mnist"
    assert {(i["datatype"], tuple(i["shape"])) for i in metadata["inputs"]} == {("FP32", (-1, 784)), ("BYTES", (-1,))}
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    _, served = v1_answer(kserve.predict_v1({"instances": [[0.0] * 784]}))
    assert served == version


@pytest.mark.parametrize("shape", [(784,), (28, 28), (1, 28, 28)])
def test_v1_instances_of_each_shape(kserve, digits, shape):
    images, labels = digits
    probabilities, version = v1_answer(kserve.predict_v1({"instances": images.reshape(-1, *shape).tolist()}))
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.75
    assert version.startswith("v")


@pytest.mark.parametrize(("shape", "nested"), [((784,), False), ((28, 28), False), ((1, 28, 28), True)])
def test_v2_fp32_of_each_shape(kserve, digits, shape, nested):
    images, labels = digits
    probabilities, _ = v2_answer(kserve.infer_v2(v2_tensor(images.reshape(-1, *shape), nested)))
    assert probabilities.shape == (8, 10)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.75


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_drawings_as_v1_b64_and_v2_bytes(kserve, image_format):
    drawings = [
        encode(draw_digit(d, canvas=(480, 360), centre=(100, 280), size=80, mode="RGB"), image_format) for d in (4, 7)
    ]
    probabilities, _ = v1_answer(kserve.predict_v1({"instances": [{"b64": b64(png)} for png in drawings]}))
    assert list(probabilities.argmax(axis=1)) == [4, 7]
    body = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [2], "data": [b64(p) for p in drawings]}]}
    v2_probabilities, _ = v2_answer(kserve.infer_v2(body))
    np.testing.assert_allclose(v2_probabilities, probabilities, rtol=1e-5)


def test_the_same_probabilities_as_seldon(kserve, served_root, digits):
    images, _ = digits
    png = encode(draw_digit(3, size=120))
    with SeldonServer(served_root, workers=1, grpc_workers=0) as seldon:
        response = seldon.predict({"data": {"ndarray": images.tolist()}})
        assert response.status_code == 200, response.text
        from_seldon = np.array(response.json()["data"]["ndarray"])
        from_seldon_png = np.array(seldon.predict({"binData": b64(png)}).json()["data"]["tensor"]["values"])
    from_v1, _ = v1_answer(kserve.predict_v1({"instances": images.tolist()}))
    from_v2, _ = v2_answer(kserve.infer_v2(v2_tensor(images)))
    np.testing.assert_allclose(from_v1, from_seldon, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(from_v2, from_seldon, rtol=1e-5, atol=1e-6)
    from_v1_png, _ = v1_answer(kserve.predict_v1({"instances": [{"b64": b64(png)}]}))
    np.testing.assert_allclose(from_v1_png.ravel(), from_seldon_png, rtol=1e-5, atol=1e-7)


def exported_predictions(kserve) -> tuple[float, str]:
    text = kserve.metrics()
    total = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mnist_predictions_total{")
    )
    return total, text


def test_metrics_count_every_prediction_and_name_the_served_version(kserve, digits, served_root):
    images, _ = digits
    before, _ = exported_predictions(kserve)
    for n in range(1, 5):
        v1_answer(kserve.predict_v1({"instances": images[:n].tolist()}))
        v2_answer(kserve.infer_v2(v2_tensor(images[:n])))
    after, text = exported_predictions(kserve)
    assert after == before + 2 * sum(range(1, 5))
    version = (served_root / "LATEST").read_text().strip()
    assert f'mnist_model_version_info{{served_version="{version}"}} 1.0' in text
    assert "mnist_predictions_created" not in text


def test_max_batch_is_a_flag(served_root):
    with KServeServer(served_root, max_batch=2) as small:
        wait_ready(small)
        v1_answer(small.predict_v1({"instances": np.zeros((2, 784)).tolist()}))
        response = small.infer_v2(v2_tensor(np.zeros((3, 784), dtype=np.float32)))
        assert response.status_code == 400
        assert "batch of 3 images is too large: at most 2" in response.json()["error"]


def wait_ready(server: KServeServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while server.ready().status_code != 200:
        assert time.monotonic() < deadline, server.ready().text
        time.sleep(0.2)


def test_no_log_line_per_request(kserve, digits):
    """kserve's timing middleware logs each request's wall and CPU time; serve_mnist.py keeps that quiet."""
    images, _ = digits
    before = kserve.output().count("\n")
    for _ in range(20):
        v2_answer(kserve.infer_v2(v2_tensor(images[:1])))
        v1_answer(kserve.predict_v1({"instances": images[:1].tolist()}))
    lines = kserve.output().splitlines()[before:]
    assert not [line for line in lines if "kserve.trace" in line or "/infer" in line or ":predict" in line], lines[:5]
