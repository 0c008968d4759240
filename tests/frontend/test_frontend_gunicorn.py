"""The app under gunicorn with the image's configuration (mnist_frontend.gunicorn_config), over real HTTP."""

import base64
import json
import subprocess
import urllib.error
import urllib.request

import pytest
from scripted_seldon import MODEL_VERSION, digit_png
from support.processes import Server, component_env, free_port, venv_bin, wait_for_http

pytestmark = pytest.mark.slow


def gunicorn_argv(port: int) -> list[str]:
    """The image's command line, bound to a local port instead of 0.0.0.0:8080."""
    return [
        venv_bin("frontend", "gunicorn"),
        "--config",
        "python:mnist_frontend.gunicorn_config",
        "--bind",
        f"127.0.0.1:{port}",
        "mnist_frontend:create_app()",
    ]


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_gunicorn_serves_the_app_configured_from_the_environment(seldon, tmp_path):
    port = free_port()
    env = component_env("frontend", FRONTEND_SELDON_URL=seldon.url, FRONTEND_MAX_CONTENT_LENGTH="4096")
    with Server(gunicorn_argv(port), env=env, cwd=tmp_path) as server:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", timeout=30, proc=server.proc)
        wait_for_http(f"{base}/readyz", timeout=10, proc=server.proc)

        image = "data:image/png;base64," + base64.b64encode(digit_png()).decode()
        status, answer = post_json(f"{base}/api/predict", {"image": image})
        assert (status, answer["model_version"]) == (200, MODEL_VERSION)

        status, answer = post_json(f"{base}/api/predict", {"image": image + "A" * 5000})
        assert status == 413
        assert "4096 bytes" in answer["error"]

        seldon.answer(503, {"status": {"info": "no model published yet"}})
        assert post_json(f"{base}/api/predict", {"image": image}) == (
            503,
            {"error": "the model server is not ready: no model published yet"},
        )
        log = server.output()
    assert "Using worker: gthread" in log


def test_gunicorn_refuses_to_start_with_a_bad_setting(tmp_path):
    env = component_env("frontend", FRONTEND_SELDON_TIMEOUT='"soon"')
    done = subprocess.run(
        gunicorn_argv(free_port()), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "FRONTEND_SELDON_TIMEOUT must be positive, a number of seconds; got 'soon'" in done.stderr
