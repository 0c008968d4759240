"""scripts/predict.py --protocol v2 against the real KServe ModelServer serving a published model."""

import json

import pytest
from support.processes import REPO, Server, component_env, free_port, venv_bin, wait_for_http
from test_predict import chart, predict, publish

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kserve(tmp_path_factory):
    """A published model, MNIST files and a PNG in a folder, and the KServe server following that folder."""
    root = tmp_path_factory.mktemp("predict-v2")
    reference = publish(root)
    port = free_port()
    argv = [
        venv_bin("kserve"),
        str(REPO / "serving" / "kserve_predictor" / "serve_mnist.py"),
        f"--model_root={root / 'models'}",
        f"--http_port={port}",
    ]
    with Server(argv, env=component_env("kserve", PYTHONDONTWRITEBYTECODE="1")) as server:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/v2/models/mnist/ready", timeout=120, proc=server.proc)
        yield {"root": root, "url": f"{url}/v2/models/mnist/infer", **reference}


@pytest.mark.parametrize("index", [0, 2])
def test_mnist_index_over_v2_shows_the_models_own_probabilities(kserve, index):
    args = ["--protocol", "v2", "--mnist-index", str(index), "--data-dir", str(kserve["root"] / "data")]
    result = predict(*args, url=kserve["url"])
    assert result.returncode == 0, result.stderr
    rows = chart(result.stdout)
    assert [digit for digit, _, _ in rows] == list(range(10))
    assert [p for _, p, _ in rows] == pytest.approx(kserve["probabilities"][index], abs=2e-4)
    assert f"model version: {kserve['version']}" in result.stdout
    assert f"(true label: {kserve['labels'][index]})" in result.stdout


def test_png_over_v2_is_a_bytes_tensor(kserve):
    result = predict("--protocol", "v2", str(kserve["root"] / "digit.png"), "--raw", url=kserve["url"])
    assert result.returncode == 0, result.stderr
    raw = json.loads(result.stdout[: result.stdout.index("\ninput:")])
    assert raw["outputs"][0]["shape"] == [1, 10]
    assert sum(p for _, p, _ in chart(result.stdout)) == pytest.approx(1.0, abs=1e-3)


def test_a_v2_refusal_is_reported_with_the_servers_reason(kserve, tmp_path):
    not_an_image = tmp_path / "digit.png"
    not_an_image.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = predict("--protocol", "v2", str(not_an_image), url=kserve["url"])
    assert result.returncode == 1
    assert result.stderr.startswith(f"predict.py: {kserve['url']} answered HTTP 400: ")
    assert "expected" in result.stderr


def test_v2_without_a_server_names_the_predictor_port_forward(kserve):
    closed = f"http://127.0.0.1:{free_port()}/v2/models/mnist/infer"
    result = predict("--protocol", "v2", str(kserve["root"] / "digit.png"), url=closed)
    assert result.returncode == 1
    assert "kubectl port-forward svc/mnist-predictor 8080:80" in result.stderr


def test_an_unknown_protocol_exits_2():
    result = predict("--protocol", "grpc", "digit.png")
    assert result.returncode == 2
    assert "invalid choice: 'grpc'" in result.stderr
