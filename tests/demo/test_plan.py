"""Planning overlays/cpu: what each process would be given, and what the runner refuses (no process is started)."""

import copy
import json

import pytest
from local_runner.demo import Settings, build_plan, remove_scratch
from local_runner.errors import RefusedError
from local_runner.render import Rendering

# kubectl kustomize renders the overlay, and the frontend's environment lists Flask's settings.
pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path):
    return Settings(overlay=tmp_path, demo_dir=tmp_path / "demo", frontend_port=18080, model_port=19000)


@pytest.fixture
def plan_of():
    """build_plan on a copy of a rendering; the plans' temporary folders are removed afterwards."""
    plans = []

    def plan(rendering: Rendering, settings: Settings):
        plans.append(build_plan(Rendering(copy.deepcopy(rendering.documents)), settings))
        return plans[-1]

    yield plan
    for p in plans:
        remove_scratch(p)


def test_the_cpu_overlay_as_local_processes(cpu_rendering, settings, plan_of):
    plan = plan_of(cpu_rendering, settings)
    pvc = settings.demo_dir / "pvc" / "mnist-pvc"

    master, worker = (r.plan for r in plan.job.replicas)
    assert (master.env["RANK"], worker.env["RANK"], master.env["WORLD_SIZE"]) == ("0", "1", "2")
    assert master.env["MASTER_ADDR"] == worker.env["MASTER_ADDR"] == "127.0.0.1"
    assert master.env["MASTER_PORT"] == worker.env["MASTER_PORT"]
    assert master.argv[1:3] == ["-m", "mnist_ddp"] and master.argv[0].endswith(".venv/trainer/bin/python")
    assert f"--model-root={pvc}/models/mnist" in master.argv
    assert "--backend=gloo" in master.argv
    assert (plan.model_root, plan.data_dir) == (pvc / "models/mnist", pvc / "data/mnist")

    model = plan.model
    assert model.env["PREDICTIVE_UNIT_HTTP_SERVICE_PORT"] == "19000"
    assert json.loads(model.env["PREDICTIVE_UNIT_PARAMETERS"]) == [
        {"name": "model_root", "value": f"{pvc}/models/mnist", "type": "STRING"}
    ]
    assert (model.env["PREDICTIVE_UNIT_ID"], model.env["PREDICTOR_ID"]) == ("classifier", "default")
    assert model.env["SELDON_DEPLOYMENT_ID"] == "mnist-classifier"
    assert model.readiness.port == 19000

    (frontend,) = plan.servers
    assert frontend.env["FRONTEND_SELDON_URL"] == "http://127.0.0.1:19000/api/v1.0/predictions"
    assert frontend.env["FRONTEND_DATA_DIR"] == f"{pvc}/data/mnist"
    assert frontend.readiness.port == 18080
    assert all("/mnt/pvc" not in word for word in master.argv + model.argv + frontend.argv)


def _job(docs):
    return next(d for d in docs if d["kind"] == "PyTorchJob")


def _frontend(docs):
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def _model(docs):
    return next(d for d in docs if d["kind"] == "SeldonDeployment")["spec"]["predictors"][0]


def _add_statefulset(docs):
    docs.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {}})


def _elastic(docs):
    _job(docs)["spec"]["elasticPolicy"] = {"minReplicas": 1, "maxReplicas": 2}


def _no_backoff(docs):
    del _job(docs)["spec"]["runPolicy"]["backoffLimit"]


def _init_container(docs):
    _frontend(docs)["initContainers"] = [{"name": "wait", "image": "busybox"}]


def _host_path(docs):
    _frontend(docs)["volumes"][0] = {"name": "mnist-pvc", "hostPath": {"path": "/data"}}


def _exec_probe(docs):
    _frontend(docs)["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}}


def _unknown_claim(docs):
    _frontend(docs)["volumes"][0]["persistentVolumeClaim"]["claimName"] = "mnist-pvc2"


def _misspelt_service(docs):
    _frontend(docs)["containers"][0]["env"][0]["value"] = "http://mnist-classifier-defualt:8000/api/v1.0/predictions"


def _two_predictors(docs):
    sdep = next(d for d in docs if d["kind"] == "SeldonDeployment")
    sdep["spec"]["predictors"].append(copy.deepcopy(sdep["spec"]["predictors"][0]) | {"name": "canary"})


def _graph_children(docs):
    _model(docs)["graph"]["children"] = [{"name": "other", "type": "MODEL"}]


REFUSALS = {
    "unknown kind": (_add_statefulset, "StatefulSet/db: kind StatefulSet is not emulated"),
    "elastic job": (_elastic, "PyTorchJob/mnist-ddp: elasticPolicy"),
    "no backoff limit": (_no_backoff, "PyTorchJob/mnist-ddp: runPolicy.backoffLimit is unset"),
    "init container": (_init_container, "Deployment/mnist-frontend: initContainers are not emulated"),
    "hostPath volume": (_host_path, "Deployment/mnist-frontend: volume mnist-pvc of type ['hostPath'] is not emulated"),
    "exec probe": (
        _exec_probe,
        "Deployment/mnist-frontend container frontend: readinessProbe ['exec'] is not emulated",
    ),
    "unknown claim": (_unknown_claim, "Deployment/mnist-frontend: volume mnist-pvc uses claim 'mnist-pvc2'"),
    "misspelt service": (
        _misspelt_service,
        "env FRONTEND_SELDON_URL: http://mnist-classifier-defualt:8000 names no Service",
    ),
    "two predictors": (_two_predictors, "SeldonDeployment/mnist-classifier: 2 predictors"),
    "graph children": (_graph_children, "SeldonDeployment/mnist-classifier: a graph with children needs the executor"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_what_cannot_be_emulated_is_refused_naming_the_workload(cpu_rendering, settings, case):
    change, message = REFUSALS[case]
    docs = copy.deepcopy(cpu_rendering.documents)
    change(docs)
    with pytest.raises(RefusedError) as info:
        build_plan(Rendering(docs), settings)
    assert message in str(info.value)


def test_cluster_only_objects_are_listed_as_not_enforced(cpu_rendering, settings, plan_of):
    notes = plan_of(cpu_rendering, settings).notes
    assert "NetworkPolicy/mnist-frontend: not enforced locally (it only matters on a cluster)" in notes
