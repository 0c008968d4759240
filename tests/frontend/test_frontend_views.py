"""Routes through the Flask test client, with Seldon played by a real local HTTP server."""

import base64
import io
import random
import re
import time

import pytest
from mnist_files import write_idx_split
from PIL import Image
from scripted_seldon import MODEL_VERSION, PROBABILITIES, digit_png, seldon_answer

from mnist_frontend import create_app
from mnist_frontend.seldon import NUM_CLASSES
from mnist_frontend.views import READY_CHECK_TIMEOUT


def test_page_has_the_contract_elements(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for element_id in ("digit-canvas", "predict", "clear", "prediction", "error"):
        assert f'id="{element_id}"' in html
    assert re.findall(r'data-digit="(\d)" data-probability="0"', html) == [str(d) for d in range(10)]
    assert 'type="button" id="predict"' in html
    assert 'type="button" id="clear"' in html


def test_page_loads_nothing_from_other_sites(client):
    html = client.get("/").get_data(as_text=True)
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    for path in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        with client.get(path) as static:
            assert static.status_code == 200, path
    assert "default-src 'self'" in client.get("/").headers["Content-Security-Policy"]


def test_random_digit_button_is_absent_without_data(client):
    assert 'id="random-digit"' not in client.get("/").get_data(as_text=True)
    answer = client.get("/api/random-digit")
    assert answer.status_code == 404
    assert "FRONTEND_DATA_DIR" in answer.json["error"]


@pytest.mark.parametrize(("split", "label"), [("t10k", "Random test digit"), ("train", "Random training digit")])
def test_random_digit_button_names_the_split(seldon, tmp_path, split, label):
    write_idx_split(tmp_path, split, [[7] * 784], [7])
    client = create_app({"TESTING": True, "SELDON_URL": seldon.url, "DATA_DIR": str(tmp_path)}).test_client()
    assert f'id="random-digit">{label}</button>' in client.get("/").get_data(as_text=True)


def digit_images(count: int) -> list[list[int]]:
    """`count` different 28x28 images of random grey levels: no two alike, none symmetric."""
    rng = random.Random(5)
    return [[rng.randrange(256) for _ in range(784)] for _ in range(count)]


def decode_png(data_url: str) -> tuple[tuple[int, int], str, bytes]:
    """(size, mode, pixels) of a PNG data URL, decoded by Pillow."""
    assert data_url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.partition(",")[2], validate=True))) as image:
        assert image.format == "PNG"
        return image.size, image.mode, image.tobytes()


def test_random_digit_answers_the_png_of_the_digit_it_names(seldon, tmp_path):
    images, labels = digit_images(3), [3, 8, 1]
    write_idx_split(tmp_path, "t10k", images, labels)
    client = create_app({"TESTING": True, "SELDON_URL": seldon.url, "DATA_DIR": str(tmp_path)}).test_client()
    seen = set()
    for _ in range(40):
        answer = client.get("/api/random-digit")
        assert answer.status_code == 200
        body = answer.json
        assert body["split"] == "t10k"
        assert body["label"] == labels[body["index"]]
        assert decode_png(body["image"]) == ((28, 28), "L", bytes(images[body["index"]]))
        seen.add(body["index"])
    assert seen == {0, 1, 2}


def test_random_digit_reports_unreadable_files(seldon, tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"nor this")
    client = create_app({"TESTING": True, "SELDON_URL": seldon.url, "DATA_DIR": str(tmp_path)}).test_client()
    answer = client.get("/api/random-digit")
    assert answer.status_code == 500
    assert "unreadable" in answer.json["error"]
    assert "Traceback" not in answer.get_data(as_text=True)


def test_predict_forwards_the_image_as_bindata(client, seldon, drawing):
    answer = client.post("/api/predict", json={"image": drawing})
    assert answer.status_code == 200, answer.json
    assert answer.json == {"probabilities": PROBABILITIES, "prediction": 7, "model_version": MODEL_VERSION}
    [request] = seldon.requests
    assert request["path"] == "/api/v1.0/predictions"
    assert request["content_type"] == "application/json"
    assert request["json"] == {"binData": base64.b64encode(digit_png()).decode()}


def test_predict_accepts_plain_base64(client, seldon):
    answer = client.post("/api/predict", json={"image": base64.b64encode(digit_png()).decode()})
    assert answer.status_code == 200
    assert seldon.requests[0]["json"]["binData"] == base64.b64encode(digit_png()).decode()


def test_predict_reads_ndarray_answers(client, seldon, drawing):
    probabilities = [0.9] + [0.1 / 9] * 9
    seldon.answer(body={"data": {"names": [], "ndarray": [probabilities]}, "meta": {}})
    answer = client.post("/api/predict", json={"image": drawing})
    assert answer.status_code == 200
    assert answer.json == {"probabilities": probabilities, "prediction": 0, "model_version": "unknown"}


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
BAD_UPLOADS = [
    ("not json", "text/plain", "JSON body"),
    ("[1, 2]", "application/json", "JSON body"),
    ('{"picture": "x"}', "application/json", "JSON body"),
    ('{"image": 42}', "application/json", "must be a string"),
    ('{"image": ""}', "application/json", "empty"),
    ('{"image": "data:text/plain;base64,aGk="}', "application/json", "data URL of type image/png or image/jpeg"),
    ('{"image": "data:image/png,rawbytes"}', "application/json", "data URL of type"),
    ('{"image": "data:image/png;base64,%%%"}', "application/json", "not valid base64"),
    ('{"image": "aGVsbG8gd29ybGQ="}', "application/json", "neither a PNG nor a JPEG"),
]


@pytest.mark.parametrize(("body", "content_type", "message"), BAD_UPLOADS)
def test_predict_refuses_bad_uploads(client, seldon, body, content_type, message):
    answer = client.post("/api/predict", data=body, content_type=content_type)
    assert answer.status_code == 400
    assert message in answer.json["error"]
    assert seldon.requests == []


def test_predict_accepts_jpeg_signature(client, seldon):
    data = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert client.post("/api/predict", json={"image": data}).status_code == 200
    assert base64.b64decode(seldon.requests[0]["json"]["binData"]) == JPEG


def test_predict_refuses_requests_over_the_size_limit(seldon, drawing):
    client = create_app({"TESTING": True, "SELDON_URL": seldon.url, "MAX_CONTENT_LENGTH": 2000}).test_client()
    padding = base64.b64encode(digit_png() + b"\x00" * 3000).decode()
    answer = client.post("/api/predict", json={"image": "data:image/png;base64," + padding})
    assert answer.status_code == 413
    assert "2000 bytes" in answer.json["error"]
    assert client.post("/api/predict", json={"image": drawing}).status_code == 200
    assert len(seldon.requests) == 1


SELDON_FAILURES = [
    # (Seldon's status, its body, our status, text our message must hold)
    (400, {"status": {"code": -1, "info": "the image is blank", "reason": "MICROSERVICE_BAD_DATA", "status": 1}}, 400,
     "the image is blank"),
    (422, b"plain text complaint", 400, "plain text complaint"),
    (503, {"status": {"code": 503, "info": "no model published yet", "status": "FAILURE"}}, 503,
     "no model published yet"),
    (500, {"status": {"code": -1, "info": "boom", "reason": "MICROSERVICE_INTERNAL_ERROR"}}, 502, "HTTP 500): boom"),
    (500, b"<html>Internal Server Error</html>", 502, "Internal Server Error"),
    (200, b"this is not json", 502, "something other than a prediction"),
    (200, {"data": {"tensor": {"values": [0.5, 0.5]}}}, 502, "2 values, not 10"),
    (200, {"data": {"ndarray": [[2.0] * 10]}}, 502, "not probabilities"),
    (200, {"meta": {}}, 502, "something other than a prediction"),
]  # fmt: skip


@pytest.mark.parametrize(("seldon_status", "seldon_body", "status", "message"), SELDON_FAILURES)
def test_predict_maps_seldon_failures(client, seldon, drawing, seldon_status, seldon_body, status, message):
    seldon.answer(seldon_status, seldon_body)
    answer = client.post("/api/predict", json={"image": drawing})
    assert answer.status_code == status
    assert message in answer.json["error"]
    assert "Traceback" not in answer.get_data(as_text=True)


def test_predict_times_out_on_a_hanging_seldon(client, seldon, drawing):
    seldon.answer(delay=30)
    started = time.monotonic()
    answer = client.post("/api/predict", json={"image": drawing})
    elapsed = time.monotonic() - started
    assert answer.status_code == 504
    assert "did not answer within 0.5 s" in answer.json["error"]
    assert elapsed < 5


def test_predict_reports_a_model_server_that_is_not_running(closed_url, drawing):
    client = create_app({"TESTING": True, "SELDON_URL": closed_url}).test_client()
    answer = client.post("/api/predict", json={"image": drawing})
    assert answer.status_code == 503
    assert "cannot reach the model server at http://127.0.0.1:" in answer.json["error"]
    assert "Connection refused" in answer.json["error"]


def test_predict_reports_an_unknown_host(drawing):
    client = create_app({"TESTING": True, "SELDON_URL": "http://no-such-host.invalid/api"}).test_client()
    answer = client.post("/api/predict", json={"image": drawing})
    assert answer.status_code == 503
    assert "no-such-host.invalid" in answer.json["error"]


def test_predict_result_is_the_most_likely_digit(client, seldon, drawing):
    for digit in range(NUM_CLASSES):
        probabilities = [0.05] * NUM_CLASSES
        probabilities[digit] = 0.55
        seldon.answer(body=seldon_answer(probabilities))
        assert client.post("/api/predict", json={"image": drawing}).json["prediction"] == digit


def test_api_errors_are_json(client):
    wrong_method = client.get("/api/predict")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json
    unknown = client.get("/api/nothing-here")
    assert unknown.status_code == 404
    assert "requested URL was not found" in unknown.json["error"]


def test_unexpected_errors_answer_a_message_not_a_trace(app):
    def broken():
        raise RuntimeError("secret internals")

    app.add_url_rule("/api/broken", view_func=broken)
    app.testing = False
    answer = app.test_client().get("/api/broken")
    assert answer.status_code == 500
    assert answer.json == {"error": "internal error in the frontend; see its log"}


def test_healthz(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok"}


def test_readyz_when_seldon_answers(client, seldon):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ready"}


def test_readyz_when_seldon_is_down(closed_url):
    client = create_app({"TESTING": True, "SELDON_URL": closed_url}).test_client()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "cannot reach the model server" in answer.json["error"]


def test_readyz_when_seldon_hangs(client, seldon):
    seldon.answer(delay=30)
    started = time.monotonic()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "did not answer" in answer.json["error"]
    assert time.monotonic() - started < 2


def test_readyz_caps_a_long_seldon_timeout(seldon):
    """Kubernetes gives up on the probe after a second: a long SELDON_TIMEOUT must not hold /readyz."""
    client = create_app({"TESTING": True, "SELDON_URL": seldon.url, "SELDON_TIMEOUT": 30}).test_client()
    seldon.answer(delay=30)
    started = time.monotonic()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert f"did not answer within {READY_CHECK_TIMEOUT:g} s" in answer.json["error"]
    assert time.monotonic() - started < 10


def test_security_headers(client):
    headers = client.get("/").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
