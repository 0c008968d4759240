"""`make bench-serve` measures the server as the SeldonDeployment runs it."""

import sys

import yaml
from support.processes import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_serve


def classifier_env() -> dict[str, str]:
    sdep = yaml.safe_load((REPO / "base" / "serving-seldondeployment.yaml").read_text())
    (predictor,) = sdep["spec"]["predictors"]
    (container,) = predictor["componentSpecs"][0]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_benchmark_defaults_are_the_deployed_settings(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_serve.py"])
    args = bench_serve.parse_args()
    env = classifier_env()
    assert (args.workers, args.threads, args.grpc_workers) == (
        int(env.pop("GUNICORN_WORKERS")),
        int(env.pop("GUNICORN_THREADS")),
        int(env.pop("GRPC_WORKERS")),
    )
    assert env == bench_serve.OURS_ENV
