"""scripts/deploy.sh: the overlay it applies, the wrapper kustomization it writes, the waits, a failed job."""

import json
import os
import textwrap

import pytest
import yaml
from support.processes import REPO

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
    assert result.stdout.startswith("Usage: scripts/deploy.sh cpu|gpu|OVERLAY_DIR")
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
        ((), "which overlay? expected cpu, gpu or an overlay directory"),
        (("tpu",), "unknown argument 'tpu' (expected cpu, gpu, another folder of overlays/ or a directory with a"),
        (("cpu", "--bogus"), "unknown option '--bogus'"),
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


def three_worker_overlay(folder) -> str:
    """The docs/02 recipe: an overlay of its own on top of overlays/cpu, with 3 Workers; returns its path."""
    overlay = folder / "my-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - {os.path.relpath(REPO / "overlays" / "cpu", overlay)}
            patches:
              - target: {{kind: PyTorchJob, name: mnist-ddp}}
                patch: |-
                  - {{op: replace, path: /spec/pytorchReplicaSpecs/Worker/replicas, value: 3}}
            """)
    )
    return str(overlay)


def test_any_overlay_directory_is_applied_and_waited_for(scripts, tmp_path):
    overlay = three_worker_overlay(tmp_path)
    result = scripts.run("deploy.sh", overlay, "--retrain")
    assert result.returncode == 0, result.stderr
    assert f"kubectl apply -k {overlay}" in result.calls
    assert "kubectl delete pytorchjob/mnist-ddp --ignore-not-found --wait=true" in result.calls
    job = rendered(result.applied)["PyTorchJob/mnist-ddp"]
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    assert [c for c in result.calls if c.startswith(("kubectl wait", "kubectl rollout"))][-2:] == [
        c.replace("'", "") for c in [SDEP_WAIT, FRONTEND_WAIT]
    ]


def test_a_relative_overlay_directory_is_read_from_where_the_script_is_run(scripts):
    three_worker_overlay(scripts.bin.parent)
    result = scripts.run("deploy.sh", "my-overlay", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.commands[0] == f"kubectl apply -k {scripts.bin.parent.resolve() / 'my-overlay'}"


def test_options_wrap_any_overlay_and_the_trainer_tag_follows_its_gpus(scripts, tmp_path):
    overlay = tmp_path / "gpu-mine"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(REPO / 'overlays' / 'gpu', overlay)}\n"
    )
    result = scripts.run("deploy.sh", str(overlay), "--registry", "r.example", "--tag", "7", "--dry-run")
    assert result.returncode == 0, result.stderr
    wrapper = wrapper_of(result.stdout)
    assert wrapper["resources"][0].endswith(f"{overlay.resolve()}".lstrip("/"))
    assert {i["newName"]: i["newTag"] for i in wrapper["images"]}["r.example/mnist-trainer"] == "7-gpu"


def test_trainjob_and_inferenceservice_overlays_get_their_own_waits(scripts, tmp_path):
    overlay = tmp_path / "v2"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources:\n  - objects.yaml\n")
    (overlay / "objects.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: trainer.kubeflow.org/v1alpha1
            kind: TrainJob
            metadata: {name: mnist-ddp}
            spec:
              trainer: {args: [--checkpoint-dir=/mnt/pvc/checkpoints/v2]}
            ---
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata: {name: mnist}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: mnist-frontend}
            """)
    )
    result = scripts.run("deploy.sh", str(overlay), "--retrain", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.commands[0] == "kubectl delete trainjob/mnist-ddp --ignore-not-found --wait=true"
    overrides = json.loads(result.commands[1].split("'--overrides=")[1].rstrip("'"))
    assert overrides["spec"]["containers"][0]["command"] == ["rm", "-rf", "/mnt/pvc/checkpoints/v2"]
    assert result.commands[3:] == [
        "kubectl wait --for=condition=Complete trainjob/mnist-ddp --timeout=30m",
        "kubectl wait --for=condition=Ready inferenceservice/mnist --timeout=10m",
        FRONTEND_WAIT,
    ]
    real = scripts.run("deploy.sh", str(overlay))
    assert real.calls[0] == "kubectl get crd trainjobs.trainer.kubeflow.org inferenceservices.serving.kserve.io"


def test_an_overlay_without_a_training_job_is_refused(scripts, tmp_path):
    overlay = tmp_path / "frontend-only"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources:\n  - d.yaml\n")
    (overlay / "d.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    result = scripts.run("deploy.sh", str(overlay), "--dry-run")
    assert result.returncode == 2
    assert "renders no PyTorchJob or TrainJob" in result.stderr


def kubectl_without_pvc(scripts) -> None:
    """Make the kubectl stand-in answer `get pvc/...` with NotFound, as on a first deploy."""
    stand_in = scripts.bin / "kubectl"
    lines = stand_in.read_text().splitlines(keepends=True)
    not_found = (
        'if [[ ${1:-} == get && ${2:-} == pvc/* ]]; then printf \'%s\\n\' "kubectl $*" >>"$SPY_LOG"; exit 1; fi\n'
    )
    stand_in.write_text(lines[0] + not_found + "".join(lines[1:]))


def test_retrain_on_a_first_deploy_skips_the_checkpoint_when_there_is_no_pvc(scripts):
    kubectl_without_pvc(scripts)
    result = scripts.run("deploy.sh", "cpu", "--retrain", "--namespace", "team-a")
    assert result.returncode == 0, result.stderr
    assert "kubectl get pvc/mnist-pvc --namespace=team-a" in result.calls
    assert "# no PVC mnist-pvc yet: no checkpoint to clear" in result.stdout
    assert not any(call.startswith("kubectl run") for call in result.calls)
    assert "kubectl apply -k" in " ".join(result.calls)


def test_retrain_clears_the_checkpoint_when_the_pvc_exists(scripts):
    result = scripts.run("deploy.sh", "cpu", "--retrain")
    assert result.returncode == 0, result.stderr
    runs = [call for call in result.calls if call.startswith("kubectl run mnist-clear-checkpoint")]
    assert len(runs) == 1
    assert result.calls.index("kubectl get pvc/mnist-pvc") < result.calls.index(runs[0])
