#!/usr/bin/env bash
# Step 01 of the tutorial: create a cluster (kind or GKE), install the Training Operator and Seldon Core, wait until Ready.
set -euo pipefail

readonly TRAINING_OPERATOR_VERSION=v1.9.4
# The upstream standalone install at that version, plus a restricted init container for Worker pods.
TRAINING_OPERATOR_MANIFESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/operators/training-operator"
readonly TRAINING_OPERATOR_MANIFESTS
# Adds the capabilities drop that Pod Security "restricted" requires to Seldon's executor container.
readonly SELDON_EXECUTOR_POLICY="${TRAINING_OPERATOR_MANIFESTS%/training-operator}/seldon-core/executor-restricted.yaml"
readonly SELDON_CORE_VERSION=1.17.1
readonly SELDON_CHARTS=https://storage.googleapis.com/seldon-charts

usage() {
  cat <<EOF
Usage: scripts/setup-cluster.sh kind|gke [options]

Create a Kubernetes cluster for the tutorial, then install
  - the Kubeflow Training Operator ${TRAINING_OPERATOR_VERSION} (standalone, server-side apply), and
  - the Seldon Core operator ${SELDON_CORE_VERSION} (helm chart seldon-core-operator, no ingress),
and wait until both operators are Ready. Running it again is safe: an existing
cluster (and on GKE its GPU node pool) is reused and the operators are upgraded in place.

Targets:
  kind   a single-node kind cluster on this machine (needs docker or podman, kind, kubectl, helm)
  gke    a GKE cluster with a GPU node pool (NVIDIA T4, drivers installed by GKE)
         and the Filestore CSI driver (storage class standard-rwx for the shared volume)
         (needs gcloud with gke-gcloud-auth-plugin, kubectl, helm); an existing cluster
         or node pool of that name is reused as it is

Options:
  --name NAME          cluster name (default: mnist; env CLUSTER)
  --project ID         GKE: Google Cloud project (default: env PROJECT, else gcloud's configured project)
  --zone ZONE          GKE: zone of the cluster and its GPU nodes (default: us-central1-c; env ZONE)
  --gpu-type TYPE      GKE: accelerator type (default: nvidia-tesla-t4); also nvidia-l4, nvidia-tesla-a100,
                       nvidia-a100-80gb, nvidia-h100-80gb (CUDA 13 needs compute capability 7.5 or later)
  --machine-type TYPE  GKE: machine type of the GPU nodes, one GPU each (default: from --gpu-type:
                       n1-standard-4 for T4, g2-standard-4 for L4, a2-highgpu-1g for A100,
                       a2-ultragpu-1g for A100 80GB, a3-highgpu-1g for H100 80GB)
  --gpu-driver-version VERSION
                       GKE: the NVIDIA driver GKE installs: latest or default (default: latest; the
                       CUDA 13 trainer image needs driver 580 or later, which default may not be)
  --gpu-nodes N        GKE: GPU nodes, one GPU each (default: 2, one for the Master and one for the Worker)
  --skip-cluster       do not create a cluster: install the operators into the current kubectl context
  --dry-run            print the commands that would change something, run nothing
  -h, --help           show this help

Examples:
  scripts/setup-cluster.sh kind
  PROJECT=my-project scripts/setup-cluster.sh gke --zone europe-west4-a
  scripts/setup-cluster.sh kind --skip-cluster --dry-run
EOF
}

# shellcheck source=lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh"

need() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      if [[ $DRY_RUN == 1 ]]; then
        echo "# note: $tool is not installed here; a real run needs it" >&2
      else
        die "$tool is not installed (see docs/01_setup_a_kubeflow_cluster.md, Prerequisites)"
      fi
    fi
  done
}

create_kind_cluster() {
  need kind
  if [[ $DRY_RUN == 0 ]] && kind get clusters 2>/dev/null | grep -qx "$NAME"; then
    echo "# kind cluster $NAME exists: reusing it"
    run kubectl config use-context "kind-$NAME"
    return
  fi
  run kind create cluster --name "$NAME" --wait 5m
}

# The machine type that takes one GPU of each type (accelerator-optimized families have the GPU built in).
# None for the GPUs that CUDA 13 no longer builds for (compute capability below 7.5): the GPU image cannot use them.
machine_type_for() {
  case $1 in
    nvidia-tesla-t4) echo n1-standard-4 ;;
    nvidia-l4) echo g2-standard-4 ;;
    nvidia-tesla-a100) echo a2-highgpu-1g ;;
    nvidia-a100-80gb) echo a2-ultragpu-1g ;;
    nvidia-h100-80gb) echo a3-highgpu-1g ;;
    nvidia-tesla-v100 | nvidia-tesla-p100 | nvidia-tesla-p4)
      die "--gpu-type $1: the GPU trainer image uses CUDA 13, which needs compute capability 7.5 or later (T4, L4, A100, H100); $1 has less"
      ;;
    *) die "--gpu-type $1: no default machine type for it; give one that takes a single $1 with --machine-type" ;;
  esac
}

# True if `gcloud ... describe` finds the object; a dry run assumes it does not exist.
gke_exists() {
  [[ $DRY_RUN == 0 ]] && gcloud "$@" --format='value(name)' >/dev/null 2>&1
}

create_gke_cluster() {
  need gcloud
  if [[ -z $PROJECT && $DRY_RUN == 0 ]]; then
    PROJECT=$(gcloud config get-value project 2>/dev/null || true)
  fi
  [[ -n $PROJECT ]] || die "gke needs a project: --project ID or env PROJECT"
  run gcloud services enable container.googleapis.com file.googleapis.com artifactregistry.googleapis.com --project "$PROJECT"
  if gke_exists container clusters describe "$NAME" --project "$PROJECT" --location "$ZONE"; then
    echo "# GKE cluster $NAME exists in $ZONE: reusing it"
  else
    run gcloud container clusters create "$NAME" --project "$PROJECT" --location "$ZONE" \
      --machine-type e2-standard-4 --num-nodes 2 \
      --addons GcpFilestoreCsiDriver --release-channel regular
  fi
  if gke_exists container node-pools describe gpu-pool --cluster "$NAME" --project "$PROJECT" --location "$ZONE"; then
    echo "# node pool gpu-pool exists: reusing it (resize it with gcloud container clusters resize $NAME --node-pool gpu-pool)"
  else
    run gcloud container node-pools create gpu-pool --project "$PROJECT" --location "$ZONE" --cluster "$NAME" \
      --machine-type "$MACHINE_TYPE" --num-nodes "$GPU_NODES" \
      --accelerator "type=${GPU_TYPE},count=1,gpu-driver-version=${GPU_DRIVER_VERSION}"
  fi
  run gcloud container clusters get-credentials "$NAME" --project "$PROJECT" --location "$ZONE"
  # GKE installs the NVIDIA driver with a DaemonSet after the nodes join; the GPU is allocatable only then.
  run kubectl wait node --selector "cloud.google.com/gke-accelerator=${GPU_TYPE}" \
    --for='jsonpath={.status.allocatable.nvidia\.com/gpu}=1' --timeout=15m
  run kubectl get storageclass standard-rwx
}

# MutatingAdmissionPolicy is GA (served by default) from Kubernetes 1.36; older clusters get a warning.
install_executor_policy() {
  if [[ $DRY_RUN == 0 ]] &&
    ! kubectl api-resources --api-group=admissionregistration.k8s.io -o name | grep -q '^mutatingadmissionpolicies'; then
    echo "# warning: this cluster serves no MutatingAdmissionPolicy (Kubernetes < 1.36), so Seldon's executor" \
      "passes Pod Security 'baseline', not 'restricted': see docs/manifests.md" >&2
    return 0
  fi
  run kubectl apply --server-side -f "$SELDON_EXECUTOR_POLICY"
}

install_operators() {
  need kubectl helm
  run kubectl apply --server-side -k "$TRAINING_OPERATOR_MANIFESTS"
  run kubectl wait --for=condition=Established crd/pytorchjobs.kubeflow.org --timeout=2m
  run kubectl wait --for=condition=Available deployment/training-operator --namespace kubeflow --timeout=5m

  run helm upgrade --install seldon-core seldon-core-operator --repo "$SELDON_CHARTS" --version "$SELDON_CORE_VERSION" \
    --namespace seldon-system --create-namespace --set usageMetrics.enabled=false --wait --timeout=5m
  run kubectl wait --for=condition=Established crd/seldondeployments.machinelearning.seldon.io --timeout=2m
  run kubectl wait --for=condition=Available deployment/seldon-controller-manager --namespace seldon-system --timeout=5m
  install_executor_policy

  run kubectl get crd pytorchjobs.kubeflow.org seldondeployments.machinelearning.seldon.io
  run kubectl get pods --namespace kubeflow
  run kubectl get pods --namespace seldon-system
}

TARGET=""
NAME="${CLUSTER:-mnist}"
PROJECT="${PROJECT:-}"
ZONE="${ZONE:-us-central1-c}"
GPU_TYPE=nvidia-tesla-t4
GPU_NODES=2
MACHINE_TYPE=""
GPU_DRIVER_VERSION=latest
SKIP_CLUSTER=0
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --skip-cluster) SKIP_CLUSTER=1 ;;
    --name | --project | --zone | --gpu-type | --gpu-nodes | --machine-type | --gpu-driver-version)
      [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$1 needs a value"
      case $1 in
        --name) NAME=$2 ;;
        --project) PROJECT=$2 ;;
        --zone) ZONE=$2 ;;
        --gpu-type) GPU_TYPE=$2 ;;
        --gpu-nodes) GPU_NODES=$2 ;;
        --machine-type) MACHINE_TYPE=$2 ;;
        --gpu-driver-version) GPU_DRIVER_VERSION=$2 ;;
      esac
      shift
      ;;
    kind | gke)
      [[ -z $TARGET ]] || die "only one target, got $TARGET and $1"
      TARGET=$1
      ;;
    *) die "unknown argument '$1' (expected kind or gke; --help lists the options)" ;;
  esac
  shift
done

[[ -n $TARGET ]] || die "which cluster? expected kind or gke (--help lists the options)"
[[ $NAME =~ ^[a-z][-a-z0-9]*$ ]] || die "--name '$NAME': lower-case letters, digits and '-', starting with a letter"
[[ $GPU_NODES =~ ^[1-9][0-9]*$ ]] || die "--gpu-nodes '$GPU_NODES': expected a positive integer"
case $GPU_DRIVER_VERSION in
  latest | default) ;;
  *) die "--gpu-driver-version '$GPU_DRIVER_VERSION': expected latest or default" ;;
esac
if [[ $TARGET == gke && $SKIP_CLUSTER == 0 && -z $MACHINE_TYPE ]]; then
  MACHINE_TYPE=$(machine_type_for "$GPU_TYPE") || exit 2
fi

if [[ $SKIP_CLUSTER == 0 ]]; then
  case $TARGET in
    kind) create_kind_cluster ;;
    gke) create_gke_cluster ;;
  esac
fi
install_operators
echo "# cluster ready: next, docs/02_distributed_training.md"
