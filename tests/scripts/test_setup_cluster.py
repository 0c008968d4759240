"""scripts/setup-cluster.sh: the cluster and operator commands it prints and runs."""

import pytest
from support.processes import REPO

# The upstream standalone install plus our init-container template (operators/training-operator).
TRAINING_OPERATOR = f"kubectl apply --server-side -k {REPO}/operators/training-operator"
SELDON_EXECUTOR_POLICY = f"kubectl apply --server-side -f {REPO}/operators/seldon-core/executor-restricted.yaml"
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
    assert commands[7] == SELDON_EXECUTOR_POLICY
    assert "kubectl get crd pytorchjobs.kubeflow.org seldondeployments.machinelearning.seldon.io" in commands
    assert result.calls == []


def test_gke_dry_run_creates_gpu_pool_with_drivers_and_filestore(scripts):
    result = scripts.run("setup-cluster.sh", "gke", "--project", "my-proj", "--zone", "europe-west4-a", "--dry-run")
    assert result.returncode == 0, result.stderr
    create, pool = result.commands[1], result.commands[2]
    assert create.startswith("gcloud container clusters create mnist --project my-proj --location europe-west4-a")
    assert "--addons GcpFilestoreCsiDriver" in create
    assert pool.startswith("gcloud container node-pools create gpu-pool --project my-proj")
    assert "--machine-type n1-standard-4 --num-nodes 2" in pool
    assert pool.endswith("--accelerator type=nvidia-tesla-t4,count=1,gpu-driver-version=latest")
    assert result.commands[0].endswith(
        "container.googleapis.com file.googleapis.com artifactregistry.googleapis.com --project my-proj"
    )
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
    executed = [call for call in result.calls if call != "kind get clusters" and "api-resources" not in call]
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
        (("gke", "--gpu-type", "nvidia-tesla-v100"), "needs compute capability 7.5 or later"),
        (("gke", "--gpu-type", "nvidia-b200"), "give one that takes a single nvidia-b200 with --machine-type"),
        (("gke", "--gpu-driver-version", "535"), "expected latest or default"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(scripts, args, message):
    result = scripts.run("setup-cluster.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []


@pytest.mark.parametrize(
    ("gpu_type", "machine_type"),
    [
        ("nvidia-tesla-t4", "n1-standard-4"),
        ("nvidia-l4", "g2-standard-4"),
        ("nvidia-tesla-a100", "a2-highgpu-1g"),
        ("nvidia-a100-80gb", "a2-ultragpu-1g"),
        ("nvidia-h100-80gb", "a3-highgpu-1g"),
    ],
)
def test_gke_gpu_nodes_get_the_machine_family_their_gpu_attaches_to(scripts, gpu_type, machine_type):
    result = scripts.run("setup-cluster.sh", "gke", "--project", "p", "--gpu-type", gpu_type, "--dry-run")
    assert result.returncode == 0, result.stderr
    pool = next(c for c in result.commands if c.startswith("gcloud container node-pools create"))
    assert f"--machine-type {machine_type} " in pool and f"type={gpu_type},count=1," in pool


def test_gke_machine_type_and_driver_version_can_be_given(scripts):
    result = scripts.run(
        "setup-cluster.sh", "gke", "--project", "p", "--gpu-type", "nvidia-b200", "--machine-type", "a4-highgpu-8g",
        "--gpu-driver-version", "default", "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pool = next(c for c in result.commands if c.startswith("gcloud container node-pools create"))
    assert "--machine-type a4-highgpu-8g " in pool and pool.endswith("gpu-driver-version=default")


# A gcloud that knows which GKE objects exist: `describe` succeeds for those named in $GKE_EXISTING.
GCLOUD_WITH_STATE = """#!/usr/bin/env bash
printf '%s\\n' "gcloud $*" >>"$SPY_LOG"
if [[ ${2:-} == clusters && ${3:-} == describe ]]; then [[ " $GKE_EXISTING " == *" cluster "* ]]; exit; fi
if [[ ${2:-} == node-pools && ${3:-} == describe ]]; then [[ " $GKE_EXISTING " == *" gpu-pool "* ]]; exit; fi
exit 0
"""


@pytest.mark.parametrize(
    ("existing", "created"),
    [
        ("", ["clusters create", "node-pools create"]),
        ("cluster", ["node-pools create"]),
        ("cluster gpu-pool", []),
    ],
)
def test_gke_reuses_an_existing_cluster_and_node_pool(scripts, existing, created):
    (scripts.bin / "gcloud").write_text(GCLOUD_WITH_STATE)
    result = scripts.run("setup-cluster.sh", "gke", "--project", "p", GKE_EXISTING=existing)
    assert result.returncode == 0, result.stderr
    gcloud = [call for call in result.calls if call.startswith("gcloud container")]
    assert [" ".join(c.split()[2:4]) for c in gcloud if " create " in c] == created
    assert (
        "gcloud container clusters describe mnist --project p --location us-central1-c --format=value(name)" in gcloud
    )
    assert "gcloud container clusters get-credentials mnist --project p --location us-central1-c" in gcloud
    if "cluster" in existing:
        assert "# GKE cluster mnist exists in us-central1-c: reusing it" in result.stdout
    executed = [call for call in result.calls if " describe " not in call and "api-resources" not in call]
    assert executed == [command.replace("'", "") for command in result.commands]


def test_a_cluster_without_mutating_admission_policies_gets_a_warning_not_the_policy(scripts):
    result = scripts.run("setup-cluster.sh", "kind", SPY_API_RESOURCES="")
    assert result.returncode == 0, result.stderr
    assert "serves no MutatingAdmissionPolicy (Kubernetes < 1.36)" in result.stderr
    assert SELDON_EXECUTOR_POLICY not in result.commands
    with_policy = scripts.run("setup-cluster.sh", "kind")
    assert SELDON_EXECUTOR_POLICY in with_policy.commands
