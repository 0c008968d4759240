"""scripts/deploy.sh with a Kubeflow Trainer v2 overlay: it waits for the TrainJob, which is Complete when done."""

import pytest
import yaml

TRAINJOB_WAIT = "kubectl wait --for=condition=Complete trainjob/mnist-ddp --timeout=30m"


@pytest.mark.parametrize("variant", ["cpu-trainjob", "gpu-trainjob"])
def test_dry_run_applies_the_overlay_and_waits_for_the_trainjob(scripts, variant):
    result = scripts.run("deploy.sh", variant, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.commands[:2] == [f"kubectl apply -k overlays/{variant}", TRAINJOB_WAIT]
    node0 = "-l jobset.sigs.k8s.io/jobset-name=mnist-ddp,batch.kubernetes.io/job-completion-index=0"
    assert f"# training: kubectl logs -f {node0}" in result.stdout
    assert result.calls == []


def test_the_trainer_image_gets_the_hardware_suffix_and_retrain_deletes_the_trainjob(scripts):
    result = scripts.run("deploy.sh", "gpu-trainjob", "--registry", "ghcr.io/you", "--tag", "0.2.0", "--retrain")
    assert result.returncode == 0, result.stderr
    assert (
        result.calls[0] == "kubectl get crd trainjobs.trainer.kubeflow.org seldondeployments.machinelearning.seldon.io"
    )
    assert result.calls[1] == "kubectl delete trainjob/mnist-ddp --ignore-not-found --wait=true"
    applied = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(result.applied) if d}
    assert applied["TrainJob/mnist-ddp"]["spec"]["trainer"]["image"] == "ghcr.io/you/mnist-trainer:0.2.0-gpu"
    assert "PyTorchJob/mnist-ddp" not in applied
    assert any(call.startswith("kubectl wait --for=condition=Complete trainjob/mnist-ddp") for call in result.calls)


def test_a_trainjob_that_does_not_complete_stops_the_deploy_with_its_pods_logs(scripts):
    result = scripts.run("deploy.sh", "cpu-trainjob", "--timeout", "15s", SPY_WAIT_FAILS="trainjob/mnist-ddp")
    assert result.returncode == 1
    assert "trainjob/mnist-ddp did not succeed within 15s" in result.stderr
    selector = "--selector jobset.sigs.k8s.io/jobset-name=mnist-ddp"
    assert any(call.startswith("kubectl get pods") and selector in call for call in result.calls)
    assert any(call.startswith("kubectl logs") and selector in call for call in result.calls)
    assert not any(call.startswith("kubectl wait") and "seldondeployment" in call for call in result.calls)
