"""`make bench-serve` measures the KServe server as components/kserve runs it."""

import sys

import pytest
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
