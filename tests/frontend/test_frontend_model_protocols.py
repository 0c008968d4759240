"""MODEL_PROTOCOL: the frontend speaks Seldon or KServe's V2 to the real servers, and passes their 4xx on, never 502."""

import base64
import json
import subprocess

import pytest
from scripted_seldon import MODEL_VERSION, PROBABILITIES, digit_png
from support.hostile_images import hostile_images
from support.processes import REPO, Server, component_env, free_port, venv_bin, wait_for_http

from mnist_frontend import create_app
from mnist_frontend.images import data_url
from mnist_frontend.settings import SettingsError

V2_ANSWER = {
    "model_name": "mnist",
    "model_version": MODEL_VERSION,
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 10], "data": PROBABILITIES}],
}


def test_the_protocol_defaults_to_seldon_and_comes_from_the_environment(monkeypatch):
    assert create_app({"TESTING": True}).config["MODEL_PROTOCOL"] == "seldon"
    monkeypatch.setenv("FRONTEND_MODEL_PROTOCOL", "v2")
    assert create_app({"TESTING": True}).config["MODEL_PROTOCOL"] == "v2"


@pytest.mark.parametrize("value", ["grpc", "V2", "", 2])
def test_an_unknown_protocol_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match="FRONTEND_MODEL_PROTOCOL must be one of seldon, v2"):
        create_app({"TESTING": True, "MODEL_PROTOCOL": value})


def test_v2_sends_one_bytes_tensor_and_reads_the_first_output(seldon):
    seldon.answer(body=V2_ANSWER)
    app = create_app({"TESTING": True, "SELDON_URL": seldon.url, "MODEL_PROTOCOL": "v2", "SELDON_TIMEOUT": 2})
    response = app.test_client().post("/api/predict", json={"image": data_url(digit_png())})
    assert response.status_code == 200, response.json
    assert response.json == {"probabilities": PROBABILITIES, "prediction": 7, "model_version": MODEL_VERSION}
    (tensor,) = seldon.requests[-1]["json"]["inputs"]
    assert {k: tensor[k] for k in ("datatype", "shape")} == {"datatype": "BYTES", "shape": [1]}
    assert base64.b64decode(tensor["data"][0]) == digit_png()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"outputs": [{"data": [0.1] * 9}]}, 502),
        ({"outputs": []}, 502),
        ({"error": "input 'x': expected FP32 pixels or BYTES images"}, 400),
    ],
)
def test_v2_answers_that_are_no_prediction(seldon, body, status):
    seldon.answer(status=200 if status == 502 else 400, body=body)
    app = create_app({"TESTING": True, "SELDON_URL": seldon.url, "MODEL_PROTOCOL": "v2", "SELDON_TIMEOUT": 2})
    response = app.test_client().post("/api/predict", json={"image": data_url(digit_png())})
    assert response.status_code == status
    if status == 400:
        assert "expected FP32 pixels or BYTES images" in response.json["error"]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("published")
    script = str(REPO / "tests" / "scripts" / "publish_test_model.py")
    env = component_env("trainer", PYTHONPATH=f"{REPO / 'trainer'}:{REPO / 'tests'}")
    subprocess.run([venv_bin("trainer"), script, str(out), "--model-only"], env=env, check=True, timeout=120)
    return str(out / "models")


@pytest.fixture(scope="module")
def model_servers(model_root):
    """protocol -> URL of the real server: seldon-core-microservice and the KServe ModelServer, same model."""
    seldon_port, kserve_port = free_port(), free_port()
    parameters = json.dumps([{"name": "model_root", "value": model_root, "type": "STRING"}])
    seldon_env = component_env(
        "serving",
        PREDICTIVE_UNIT_PARAMETERS=parameters,
        PREDICTIVE_UNIT_HTTP_SERVICE_PORT=str(seldon_port),
        PREDICTIVE_UNIT_GRPC_SERVICE_PORT=str(free_port()),
        PREDICTIVE_UNIT_METRICS_SERVICE_PORT=str(free_port()),
        GUNICORN_WORKERS="1",
        GRPC_WORKERS="0",
    )
    kserve_argv = [
        venv_bin("kserve"),
        str(REPO / "serving" / "kserve_predictor" / "serve_mnist.py"),
        f"--model_root={model_root}",
        f"--http_port={kserve_port}",
    ]
    seldon_argv = [venv_bin("serving", "seldon-core-microservice"), "MnistClassifier", "--service-type", "MODEL"]
    with Server(seldon_argv, env=seldon_env) as seldon, Server(kserve_argv, env=component_env("kserve")) as kserve:
        wait_for_http(f"http://127.0.0.1:{seldon_port}/health/status", timeout=120, proc=seldon.proc)
        wait_for_http(f"http://127.0.0.1:{kserve_port}/v2/models/mnist/ready", timeout=120, proc=kserve.proc)
        yield {
            "seldon": f"http://127.0.0.1:{seldon_port}/api/v1.0/predictions",
            "v2": f"http://127.0.0.1:{kserve_port}/v2/models/mnist/infer",
        }


def client_for(model_servers, protocol: str):
    config = {"TESTING": True, "SELDON_URL": model_servers[protocol], "MODEL_PROTOCOL": protocol, "SELDON_TIMEOUT": 30}
    return create_app(config).test_client()


@pytest.mark.slow
@pytest.mark.kserve
def test_both_servers_answer_the_same_drawing_with_the_same_probabilities(model_servers):
    answers = {
        p: client_for(model_servers, p).post("/api/predict", json={"image": data_url(digit_png())})
        for p in model_servers
    }
    assert all(a.status_code == 200 for a in answers.values()), {p: a.json for p, a in answers.items()}
    seldon, v2 = answers["seldon"].json, answers["v2"].json
    assert seldon["model_version"] == v2["model_version"] != "unknown"
    assert v2["prediction"] == seldon["prediction"]
    assert v2["probabilities"] == pytest.approx(seldon["probabilities"], rel=1e-5, abs=1e-7)


HOSTILE = hostile_images()


@pytest.mark.slow
@pytest.mark.kserve
@pytest.mark.parametrize("protocol", ["seldon", "v2"])
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_image_is_a_400_that_says_what_was_expected_never_a_502(model_servers, protocol, name):
    client = client_for(model_servers, protocol)
    response = client.post("/api/predict", json={"image": base64.b64encode(HOSTILE[name]).decode()})
    assert response.status_code == 400, response.json
    assert "the model server refused the image" in response.json["error"]
    assert "expected" in response.json["error"]
    assert client.post("/api/predict", json={"image": data_url(digit_png())}).status_code == 200
