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
cluster is reused and the operators are upgraded in place.

Targets:
  kind   a single-node kind cluster on this machine (needs docker or podman, kind, kubectl, helm)
  gke    a GKE cluster with a GPU node pool (NVIDIA T4, drivers installed by GKE)
         and the Filestore CSI driver (storage class standard-rwx for the shared volume)
         (needs gcloud, kubectl, helm)

Options:
  --name NAME          cluster name (default: mnist; env CLUSTER)
  --project ID         GKE: Google Cloud project (default: env PROJECT, else gcloud's configured project)
  --zone ZONE          GKE: zone of the cluster and its GPU nodes (default: us-central1-c; env ZONE)
  --gpu-type TYPE      GKE: accelerator type (default: nvidia-tesla-t4)
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

create_gke_cluster() {
  need gcloud
  if [[ -z $PROJECT && $DRY_RUN == 0 ]]; then
    PROJECT=$(gcloud config get-value project 2>/dev/null || true)
  fi
  [[ -n $PROJECT ]] || die "gke needs a project: --project ID or env PROJECT"
  run gcloud services enable container.googleapis.com file.googleapis.com --project "$PROJECT"
  run gcloud container clusters create "$NAME" --project "$PROJECT" --location "$ZONE" \
    --machine-type e2-standard-4 --num-nodes 2 \
    --addons GcpFilestoreCsiDriver --release-channel regular
  run gcloud container node-pools create gpu-pool --project "$PROJECT" --location "$ZONE" --cluster "$NAME" \
    --machine-type n1-standard-4 --num-nodes "$GPU_NODES" \
    --accelerator "type=${GPU_TYPE},count=1,gpu-driver-version=default"
  run gcloud container clusters get-credentials "$NAME" --project "$PROJECT" --location "$ZONE"
  # GKE installs the NVIDIA driver with a DaemonSet after the nodes join; the GPU is allocatable only then.
  run kubectl wait node --selector "cloud.google.com/gke-accelerator=${GPU_TYPE}" \
    --for='jsonpath={.status.allocatable.nvidia\.com/gpu}=1' --timeout=15m
  run kubectl get storageclass standard-rwx
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
  run kubectl apply --server-side -f "$SELDON_EXECUTOR_POLICY"

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
SKIP_CLUSTER=0
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --skip-cluster) SKIP_CLUSTER=1 ;;
    --name | --project | --zone | --gpu-type | --gpu-nodes)
      [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$1 needs a value"
      case $1 in
        --name) NAME=$2 ;;
        --project) PROJECT=$2 ;;
        --zone) ZONE=$2 ;;
        --gpu-type) GPU_TYPE=$2 ;;
        --gpu-nodes) GPU_NODES=$2 ;;
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

if [[ $SKIP_CLUSTER == 0 ]]; then
  case $TARGET in
    kind) create_kind_cluster ;;
    gke) create_gke_cluster ;;
  esac
fi
install_operators
echo "# cluster ready: next, docs/02_distributed_training.md"
