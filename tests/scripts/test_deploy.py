"""scripts/deploy.sh: the overlay it applies, the wrapper kustomization it writes, the waits, a failed job."""

import json

import pytest
import yaml

JOB_WAIT = "kubectl wait --for=condition=Succeeded pytorchjob/mnist-ddp --timeout=30m"
SDEP_WAIT = "kubectl wait '--for=jsonpath={.status.state}=Available' seldondeployment/mnist-classifier --timeout=10m"
FRONTEND_WAIT = "kubectl rollout status deployment/mnist-frontend --timeout=5m"


def wrapper_of(stdout: str) -> dict:
    """The kustomization printed between `cat > .../kustomization.yaml <<'EOF'` and EOF."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("+ cat > "))
    end = lines.index("EOF", start)
    return yaml.safe_load("\n".join(lines[start + 1 : end]))


def test_help(scripts):
    result = scripts.run("deploy.sh", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: scripts/deploy.sh cpu|gpu")
    assert result.calls == []


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_plain_dry_run_applies_the_overlay_and_waits_in_order(scripts, variant):
    result = scripts.run("deploy.sh", variant, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.commands == [f"kubectl apply -k overlays/{variant}", JOB_WAIT, SDEP_WAIT, FRONTEND_WAIT]
    assert result.calls == []


def test_options_become_a_wrapper_kustomization(scripts):
    result = scripts.run(
        "deploy.sh", "gpu", "--registry", "ghcr.io/you", "--tag", "0.2.0", "--namespace", "kubeflow-user",
        "--storage-class", "standard-rwx", "--pvc-access-mode", "ReadWriteOnce", "--timeout", "45m", "--retrain",
        "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    delete = "kubectl delete pytorchjob/mnist-ddp --namespace=kubeflow-user --ignore-not-found --wait=true"
    assert result.commands[0] == delete
    clear = result.commands[1]
    assert clear.startswith("kubectl run mnist-clear-checkpoint --namespace=kubeflow-user --image=busybox:1.37")
    overrides = json.loads(clear.split("'--overrides=")[1].rstrip("'"))
    assert overrides["spec"]["containers"][0]["command"] == ["rm", "-rf", "/mnt/pvc/checkpoints/mnist-ddp"]
    assert overrides["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "mnist-pvc"}
    assert result.commands[3] == "kubectl apply -k /tmp/mnist-deploy.XXXXXX"
    assert result.commands[4:] == [
        "kubectl wait --for=condition=Succeeded pytorchjob/mnist-ddp --namespace=kubeflow-user --timeout=45m",
        SDEP_WAIT.replace(" --timeout", " --namespace=kubeflow-user --timeout"),
        FRONTEND_WAIT.replace(" --timeout", " --namespace=kubeflow-user --timeout"),
    ]
    wrapper = wrapper_of(result.stdout)
    assert wrapper["resources"][0].endswith("/overlays/gpu")
    assert wrapper["namespace"] == "kubeflow-user"
    images = {image["newName"]: image["newTag"] for image in wrapper["images"]}
    assert images == {
        "ghcr.io/you/mnist-trainer": "0.2.0-gpu",
        "ghcr.io/you/mnist-serving": "0.2.0",
        "ghcr.io/you/mnist-frontend": "0.2.0",
    }
    patch = wrapper["patches"][0]
    assert patch["target"] == {"kind": "PersistentVolumeClaim", "name": "mnist-pvc"}
    assert yaml.safe_load(patch["patch"]) == [
        {"op": "add", "path": "/spec/storageClassName", "value": "standard-rwx"},
        {"op": "replace", "path": "/spec/accessModes", "value": ["ReadWriteOnce"]},
    ]
    assert result.calls == []


def rendered(applied: str) -> dict:
    """kind/name -> object of a rendered multi-document YAML."""
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in yaml.safe_load_all(applied) if doc}


def test_real_run_applies_a_wrapper_that_renders_the_overlay_with_the_changes(scripts):
    result = scripts.run(
        "deploy.sh", "cpu", "--registry", "localhost", "--tag", "dev", "--namespace", "team-a",
        "--pvc-access-mode", "ReadWriteOnce",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.calls[0] == "kubectl get crd pytorchjobs.kubeflow.org seldondeployments.machinelearning.seldon.io"
    assert result.calls[1] == "kubectl get namespace team-a"
    applied = rendered(result.applied)
    assert applied["PersistentVolumeClaim/mnist-pvc"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {doc["metadata"].get("namespace") for doc in applied.values()} == {"team-a"}
    job = applied["PyTorchJob/mnist-ddp"]["spec"]["pytorchReplicaSpecs"]
    assert job["Master"]["template"]["spec"]["containers"][0]["image"] == "localhost/mnist-trainer:dev-cpu"
    assert job["Worker"]["template"]["spec"]["containers"][0]["image"] == "localhost/mnist-trainer:dev-cpu"
    frontend = applied["Deployment/mnist-frontend"]["spec"]["template"]["spec"]["containers"][0]
    assert frontend["image"] == "localhost/mnist-frontend:dev"
    sdep = applied["SeldonDeployment/mnist-classifier"]["spec"]["predictors"][0]["componentSpecs"][0]
    assert sdep["spec"]["containers"][0]["image"] == "localhost/mnist-serving:dev"
    waits = [call for call in result.calls if call.startswith(("kubectl wait", "kubectl rollout"))]
    assert waits[0].startswith("kubectl wait --for=condition=Succeeded pytorchjob/mnist-ddp --namespace=team-a")
    assert waits[-2:] == [c.replace("'", "") for c in result.commands[-2:]]


def test_a_failed_job_stops_the_deploy_with_its_state(scripts):
    result = scripts.run("deploy.sh", "cpu", timeout=60, SPY_WAIT_FAILS="condition=Succeeded", SPY_JOB_STATE="Failed")
    assert result.returncode == 1
    assert "pytorchjob/mnist-ddp Failed" in result.stderr
    assert any(call.startswith("kubectl logs") and "replica-type=master" in call for call in result.calls)
    assert not any(call.startswith("kubectl wait") and "seldondeployment" in call for call in result.calls)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "which overlay? expected cpu or gpu"),
        (("tpu",), "unknown argument 'tpu'"),
        (("cpu", "gpu"), "only one overlay"),
        (("cpu", "--pvc-access-mode", "ReadOnlyMany"), "expected ReadWriteMany or ReadWriteOnce"),
        (("cpu", "--timeout", "soon"), "expected a number and s, m or h"),
        (("cpu", "--namespace", "Team_A"), "is not a valid namespace name"),
        (("cpu", "--tag", "a b"), "is not a valid image tag"),
        (("cpu", "--registry"), "--registry needs a value"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(scripts, args, message):
    result = scripts.run("deploy.sh", *args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []
