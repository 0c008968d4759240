"""`make bench-serve` measures the KServe server as components/kserve runs it."""

import sys

import numpy as np
import pytest
import requests
import yaml
from support.processes import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_serve

pytestmark = pytest.mark.kserve


def predictor_container() -> dict:
    isvc = yaml.safe_load((REPO / "components" / "kserve" / "serving-inferenceservice.yaml").read_text())
    (container,) = isvc["spec"]["predictor"]["containers"]
    return container


def test_the_kserve_server_runs_with_the_predictor_containers_environment():
    env = {e["name"]: e["value"] for e in predictor_container()["env"]}
    assert env == bench_serve.KSERVE_ENV


def test_the_kserve_server_is_one_process_as_in_the_container():
    # serve_mnist.py refuses --workers other than 1; the container passes none.
    assert not any(arg.startswith("--workers") for arg in predictor_container()["args"])


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "protocol"), [(1, "v1"), (2, "v2")])
def test_the_kserve_floor_answers_in_the_shape_of_ours_without_a_line_per_request(tmp_path, workers, protocol):
    """The floor rows of `bench_serve.py --floor` are the bench's own Server, URL and body, and log as ours does."""
    config = bench_serve.Config(
        f"floor-{protocol}", str(bench_serve.KSERVE_FLOOR), [REPO / "serving" / "kserve_predictor"], workers, 1, 0,
        [{"name": "model_root", "value": str(tmp_path), "type": "STRING"}],
        bench_serve.KSERVE_ENV, "kserve", protocol,
    )  # fmt: skip
    server = bench_serve.Server(config, tmp_path)
    try:
        server.wait_ready(timeout=60)
        for _ in range(3):
            response = requests.post(server.url, data=server.body(), headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text
        body = response.json()
        if protocol == "v1":
            assert body["names"] == [str(i) for i in range(10)]
            assert np.array(body["predictions"]).shape == (1, 10)
        else:
            (output,) = body["outputs"]
            assert (output["name"], output["shape"], len(output["data"])) == ("probabilities", [1, 10], 10)
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Started child process" in log if workers > 1 else "Started child process" not in log
    assert "/models/mnist" not in log, log[-2000:]
