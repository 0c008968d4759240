"""scripts/setup-cluster.sh: the cluster and operator commands it prints and runs."""

import pytest

TRAINING_OPERATOR = (
    "kubectl apply --server-side -k "
    "'github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.4'"
)
SELDON = (
    "helm upgrade --install seldon-core seldon-core-operator --repo https://storage.googleapis.com/seldon-charts "
    "--version 1.17.1 --namespace seldon-system --create-namespace --set usageMetrics.enabled=false"
)
OPERATOR_WAITS = [
    "kubectl wait --for=condition=Established crd/pytorchjobs.kubeflow.org --timeout=2m",
    "kubectl wait --for=condition=Available deployment/training-operator --namespace kubeflow --timeout=5m",
    "kubectl wait --for=condition=Established crd/seldondeployments.machinelearning.seldon.io --timeout=2m",
    "kubectl wait --for=condition=Available deployment/seldon-controller-manager --namespace seldon-system "
    "--timeout=5m",
]


def test_help(scripts):
    result = scripts.run("setup-cluster.sh", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: scripts/setup-cluster.sh kind|gke")
    assert "v1.9.4" in result.stdout and "1.17.1" in result.stdout
    assert result.calls == []


def test_kind_dry_run_prints_cluster_then_operators_and_runs_nothing(scripts):
    result = scripts.run("setup-cluster.sh", "kind", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = result.commands
    assert commands[0] == "kind create cluster --name mnist --wait 5m"
    assert commands[1] == TRAINING_OPERATOR
    assert commands[2:4] == OPERATOR_WAITS[:2]
    assert commands[4].startswith(SELDON + " --wait")
    assert commands[5:7] == OPERATOR_WAITS[2:]
    assert "kubectl get crd pytorchjobs.kubeflow.org seldondeployments.machinelearning.seldon.io" in commands
    assert result.calls == []


def test_gke_dry_run_creates_gpu_pool_with_drivers_and_filestore(scripts):
    result = scripts.run("setup-cluster.sh", "gke", "--project", "my-proj", "--zone", "europe-west4-a", "--dry-run")
    assert result.returncode == 0, result.stderr
    create, pool = result.commands[1], result.commands[2]
    assert create.startswith("gcloud container clusters create mnist --project my-proj --location europe-west4-a")
    assert "--addons GcpFilestoreCsiDriver" in create
    assert pool.startswith("gcloud container node-pools create gpu-pool --project my-proj")
    assert "--num-nodes 2 --accelerator type=nvidia-tesla-t4,count=1,gpu-driver-version=default" in pool
    assert "kubectl get storageclass standard-rwx" in result.commands
    assert TRAINING_OPERATOR in result.commands
    assert result.calls == []


def test_gke_project_from_environment_and_skip_cluster(scripts):
    result = scripts.run("setup-cluster.sh", "gke", "--dry-run", PROJECT="env-proj", CLUSTER="demo")
    assert "gcloud container clusters get-credentials demo --project env-proj --location us-central1-c" in (
        result.commands
    )
    skipped = scripts.run("setup-cluster.sh", "gke", "--skip-cluster", "--dry-run")
    assert skipped.returncode == 0
    assert skipped.commands[0] == TRAINING_OPERATOR
    assert not any(c.startswith("gcloud") for c in skipped.commands)


def test_real_run_executes_exactly_what_it_prints(scripts):
    result = scripts.run("setup-cluster.sh", "kind", "--name", "tutorial")
    assert result.returncode == 0, result.stderr
    executed = [call for call in result.calls if call != "kind get clusters"]
    printed = [command.replace("'", "") for command in result.commands]
    assert executed == printed
    assert executed[0] == "kind create cluster --name tutorial --wait 5m"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "which cluster? expected kind or gke"),
        (("minikube",), "unknown argument 'minikube'"),
        (("kind", "gke"), "only one target"),
        (("kind", "--name"), "--name needs a value"),
        (("kind", "--name", "My_Cluster"), "lower-case letters"),
        (("gke", "--gpu-nodes", "0"), "expected a positive integer"),
        (("gke", "--dry-run"), "gke needs a project"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(scripts, args, message):
    result = scripts.run("setup-cluster.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []
