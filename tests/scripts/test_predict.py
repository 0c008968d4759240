"""scripts/predict.py against the real `seldon-core-microservice MnistClassifier` serving a published model."""

import contextlib
import json
import os
import re
import subprocess
import sys
import time

import pytest
from support.processes import REPO, Server, component_env, free_port, venv_bin, wait_for_http

PREDICT = REPO / "scripts" / "predict.py"
PUBLISH = REPO / "tests" / "scripts" / "publish_test_model.py"
ROW = re.compile(r"^\s+(\d) \| (#*)\s* (\d\.\d{4})(  <- prediction)?$")

pytestmark = pytest.mark.slow


def publish(out_dir, *args: str) -> dict:
    """Run publish_test_model.py with the trainer's environment; return what it printed."""
    env = component_env("trainer", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] += os.pathsep + str(REPO / "tests")
    proc = subprocess.run(
        [venv_bin("trainer"), str(PUBLISH), str(out_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@contextlib.contextmanager
def serving(root):
    """A published model, MNIST files and a PNG in `root`, and the model server following root/models."""
    reference = publish(root)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    parameters = [
        {"name": "model_root", "value": str(root / "models"), "type": "STRING"},
        {"name": "poll_interval_s", "value": "0.5", "type": "FLOAT"},
    ]
    env = component_env(
        "serving",
        PREDICTIVE_UNIT_PARAMETERS=json.dumps(parameters),
        PREDICTIVE_UNIT_METRICS_SERVICE_PORT=str(metrics_port),
        GRPC_WORKERS="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    argv = [
        venv_bin("serving", "seldon-core-microservice"),
        "MnistClassifier",
        "--service-type",
        "MODEL",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ]
    with Server(argv, env=env) as server:
        url = f"http://127.0.0.1:{http_port}"
        wait_for_http(f"{url}/health/status", timeout=90, proc=server.proc)
        yield {"root": root, "url": f"{url}/api/v1.0/predictions", **reference}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module's tests, none of which publishes: they may run in any order."""
    with serving(tmp_path_factory.mktemp("predict")) as running:
        yield running


def predict(*args: str, url: str | None = None) -> subprocess.CompletedProcess:
    """Run predict.py as a user does: any Python, no project environment."""
    argv = [sys.executable, str(PREDICT), *args]
    if url:
        argv += ["--url", url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})


def chart(stdout: str) -> list[tuple[int, float, bool]]:
    """(digit, probability, marked) for each bar of the chart, checking each bar's length."""
    rows = []
    for line in stdout.splitlines():
        match = ROW.match(line)
        if match:
            digit, bar, probability, mark = match.groups()
            assert len(bar) == round(float(probability) * 40), line
            rows.append((int(digit), float(probability), bool(mark)))
    return rows


@pytest.mark.parametrize("index", [0, 1, 2])
def test_mnist_index_shows_the_models_own_probabilities(served, index):
    result = predict("--mnist-index", str(index), "--data-dir", str(served["root"] / "data"), url=served["url"])
    assert result.returncode == 0, result.stderr
    rows = chart(result.stdout)
    assert [digit for digit, _, _ in rows] == list(range(10))
    assert [p for _, p, _ in rows] == pytest.approx(served["probabilities"][index], abs=2e-4)
    top = max(range(10), key=served["probabilities"][index].__getitem__)
    assert [marked for _, _, marked in rows] == [digit == top for digit in range(10)]
    assert f"model version: {served['version']}" in result.stdout
    assert f"prediction:    {top}   (true label: {served['labels'][index]})" in result.stdout


def test_png_file_is_sent_as_bindata(served):
    result = predict(str(served["root"] / "digit.png"), "--raw", url=served["url"])
    assert result.returncode == 0, result.stderr
    raw = json.loads(result.stdout[: result.stdout.index("\ninput:")])
    assert raw["data"]["tensor"]["shape"] == [1, 10]
    rows = chart(result.stdout)
    assert len(rows) == 10
    assert sum(p for _, p, _ in rows) == pytest.approx(1.0, abs=1e-3)
    assert sum(marked for _, _, marked in rows) == 1
    assert f"model version: {served['version']}" in result.stdout


def assert_reported(served, new_version: str) -> None:
    """predict.py names `new_version` within 30 s (the server polls LATEST every 0.5 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = predict(str(served["root"] / "digit.png"), url=served["url"])
        assert result.returncode == 0, result.stderr
        if f"model version: {new_version}" in result.stdout:
            return
        time.sleep(0.5)
    pytest.fail(f"predict.py never reported {new_version}: {result.stdout}")


def test_a_newly_published_version_is_reported(tmp_path):
    # A server of its own: publishing into the module's model root would change what the other tests expect.
    with serving(tmp_path) as own:
        new_version = publish(own["root"], "--model-only", "--seed", "1")["version"]
        assert_reported(own, new_version)


def test_server_rejection_is_reported_with_its_reason(served, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are not the pixels you are looking for")
    result = predict(str(not_an_image), url=served["url"])
    assert result.returncode == 1
    assert result.stderr.startswith(f"predict.py: {served['url']} answered HTTP 400: ")
    assert "PNG or JPEG" in result.stderr


def test_connection_refused_names_the_port_forward():
    url = f"http://127.0.0.1:{free_port()}/api/v1.0/predictions"
    result = predict(str(PREDICT), url=url)
    assert result.returncode == 1
    assert f"cannot reach {url}" in result.stderr
    assert "kubectl port-forward svc/mnist-classifier-default 8000:8000" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either an image file or --mnist-index N"),
        (("a.png", "--mnist-index", "1", "--data-dir", "."), "give either an image file or --mnist-index N"),
        (("--mnist-index", "1"), "--mnist-index needs --data-dir"),
        (("--mnist-index", "one", "--data-dir", "."), "invalid int value"),
    ],
)
def test_bad_arguments_exit_2(args, message):
    result = predict(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_local_input_exits_1_without_calling_the_server(served, tmp_path):
    out_of_range = predict("--mnist-index", "10", "--data-dir", str(served["root"] / "data"), url=served["url"])
    assert out_of_range.returncode == 1
    assert "--mnist-index 10 is out of range: t10k-images-idx3-ubyte.gz holds 10 digits" in out_of_range.stderr
    no_files = predict("--mnist-index", "0", "--data-dir", str(tmp_path), url=served["url"])
    assert no_files.returncode == 1
    assert "no MNIST IDX files in" in no_files.stderr
    missing = predict(str(tmp_path / "missing.png"), url=served["url"])
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
