"""scripts/teardown.sh: what it deletes, with and without the PVC, and the cluster."""

import os

import pytest
from support.processes import REPO


def test_help_says_the_pvc_goes_by_default(scripts):
    result = scripts.run("teardown.sh", "--help")
    assert result.returncode == 0
    assert "WITH EVERYTHING ON IT" in result.stdout
    assert "--keep-pvc" in result.stdout


def test_default_deletes_the_overlay_including_the_pvc(scripts):
    result = scripts.run("teardown.sh", "gpu", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "INCLUDING the PVC mnist-pvc" in result.stdout
    assert result.commands[0] == "kubectl delete -k overlays/gpu --ignore-not-found --wait=true"
    assert result.commands[1].startswith("kubectl wait --for=delete 'pv/")
    assert result.calls == []


def test_keep_pvc_deletes_every_other_object_by_name(scripts):
    result = scripts.run("teardown.sh", "cpu", "--keep-pvc", "--namespace", "team-a", "--dry-run")
    assert result.returncode == 0, result.stderr
    delete = result.commands[0].split()
    assert delete[:2] == ["kubectl", "delete"]
    objects = [word for word in delete if "/" in word]
    assert "pytorchjob/mnist-ddp" in objects
    assert "seldondeployment/mnist-classifier" in objects
    assert "deployment/mnist-frontend" in objects and "service/mnist-frontend" in objects
    assert not any(o.startswith("persistentvolumeclaim/") for o in objects)
    assert "--namespace=team-a" in delete
    assert result.commands[1] == "kubectl get pvc mnist-pvc --namespace=team-a"
    assert result.calls == []


def test_operators_and_cluster(scripts):
    result = scripts.run("teardown.sh", "cpu", "--operators", "--cluster", "kind", "--name", "tut", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.commands[-4:] == [
        f"kubectl delete -f {REPO}/operators/seldon-core/executor-restricted.yaml --ignore-not-found",
        "helm uninstall seldon-core --namespace seldon-system --ignore-not-found",
        f"kubectl delete -k {REPO}/operators/training-operator --ignore-not-found",
        "kind delete cluster --name tut",
    ]
    gke = scripts.run("teardown.sh", "gpu", "--cluster", "gke", "--project", "p", "--dry-run")
    assert "gcloud container clusters delete mnist --project p --location us-central1-c --quiet" in gke.commands
    assert gke.commands[-1] == "gcloud filestore instances list --project p"


def test_real_run_with_keep_pvc_executes_what_it_prints(scripts):
    result = scripts.run("teardown.sh", "cpu", "--keep-pvc")
    assert result.returncode == 0, result.stderr
    assert result.calls == result.commands


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "which overlay was deployed? expected cpu, gpu or an overlay directory"),
        (("cpu", "--bogus"), "unknown option '--bogus'"),
        (("cpu", "--cluster", "eks"), "expected kind or gke"),
        (("cpu", "--keep-pvc", "--cluster", "gke"), "--keep-pvc with --cluster makes no sense"),
        (("cpu", "--cluster", "gke"), "needs a project"),
        (("cpu", "--namespace", "-x"), "--namespace needs a value"),
        (("all",), "unknown argument 'all'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(scripts, args, message):
    result = scripts.run("teardown.sh", *args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []


def test_any_overlay_directory_that_was_deployed(scripts, tmp_path):
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(REPO / 'overlays' / 'cpu', overlay)}\n"
    )
    everything = scripts.run("teardown.sh", str(overlay), "--dry-run")
    assert everything.returncode == 0, everything.stderr
    assert everything.commands[0] == f"kubectl delete -k {overlay} --ignore-not-found --wait=true"
    kept = scripts.run("teardown.sh", str(overlay), "--keep-pvc")
    assert kept.returncode == 0, kept.stderr
    assert "pytorchjob/mnist-ddp" in kept.calls[0] and "persistentvolumeclaim/" not in kept.calls[0]
