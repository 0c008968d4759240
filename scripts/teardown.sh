#!/usr/bin/env bash
# Step 05 of the tutorial: delete what deploy.sh applied (with or without the PVC), optionally the operators and the cluster.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/teardown.sh cpu|gpu|cpu-trainjob|gpu-trainjob [options]

Delete what `kubectl apply -k overlays/<cpu|gpu>` created: the PyTorchJob mnist-ddp,
the SeldonDeployment mnist-classifier, the frontend, and, unless --keep-pvc is given,
the PersistentVolumeClaim mnist-pvc WITH EVERYTHING ON IT (the MNIST data, the
checkpoints and every published model version).

Options:
  --keep-pvc            keep the PVC mnist-pvc and its data; delete everything else (default: delete the PVC too)
  --namespace NS        namespace the overlay was deployed into (default: the current context's namespace)
  --operators           also uninstall Seldon Core and the Training Operator (default: keep them)
  --cluster kind|gke    finally delete the cluster itself (default: keep it)
  --name NAME           cluster name for --cluster (default: mnist; env CLUSTER)
  --project ID          GKE project for --cluster gke (default: env PROJECT, else gcloud's configured project)
  --zone ZONE           GKE zone for --cluster gke (default: us-central1-c; env ZONE)
  --dry-run             print the commands that would change something, run nothing
                        (it still renders the overlay locally with `kubectl kustomize`)
  -h, --help            show this help

Examples:
  scripts/teardown.sh cpu --keep-pvc                 # stop serving and training, keep the models
  scripts/teardown.sh cpu --cluster kind             # delete everything, then the kind cluster
  PROJECT=my-project scripts/teardown.sh gpu --operators --cluster gke
EOF
}

readonly TRAINING_OPERATOR_MANIFESTS="github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.4"

# shellcheck source=lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh"

# kind/name of every object the overlay renders, one per line, e.g. persistentvolumeclaim/mnist-pvc.
rendered_objects() {
  kubectl kustomize "$OVERLAY" | awk '
    function emit() { if (kind != "" && name != "") print tolower(kind) "/" name; kind = ""; name = "" }
    /^---/ { emit(); inmeta = 0; next }
    /^kind: / { kind = $2 }
    /^metadata:/ { inmeta = 1; next }
    /^[^ ]/ { inmeta = 0 }
    inmeta && /^  name: / && name == "" { name = $2 }
    END { emit() }'
}

delete_workloads() {
  if [[ $KEEP_PVC == 0 ]]; then
    echo "# deleting everything the overlay created, INCLUDING the PVC mnist-pvc and its data"
    # The volume itself (on GKE a Filestore instance) goes after the PVC: remember it to wait for it.
    local volume="<the volume of mnist-pvc>"
    if [[ $DRY_RUN == 0 ]]; then
      volume=$(kubectl get pvc mnist-pvc ${NS_FLAG:+"$NS_FLAG"} -o 'jsonpath={.spec.volumeName}' 2>/dev/null || true)
    fi
    run kubectl delete -k "$OVERLAY" ${NS_FLAG:+"$NS_FLAG"} --ignore-not-found --wait=true
    if [[ -n $volume ]]; then
      run kubectl wait --for=delete "pv/$volume" --timeout=10m
    fi
    return
  fi
  local objects=() object
  command -v kubectl >/dev/null 2>&1 || die "kubectl is needed to render $OVERLAY"
  while IFS= read -r object; do
    if [[ $object != persistentvolumeclaim/* ]]; then
      objects+=("$object")
    fi
  done < <(rendered_objects)
  [[ ${#objects[@]} -gt 0 ]] || die "kubectl kustomize $OVERLAY rendered no objects"
  echo "# deleting everything the overlay created except the PVC mnist-pvc, which keeps the data and models"
  run kubectl delete "${objects[@]}" ${NS_FLAG:+"$NS_FLAG"} --ignore-not-found --wait=true
  run kubectl get pvc mnist-pvc ${NS_FLAG:+"$NS_FLAG"}
}

delete_operators() {
  run helm uninstall seldon-core --namespace seldon-system --ignore-not-found
  run kubectl delete -k "$TRAINING_OPERATOR_MANIFESTS" --ignore-not-found
}

delete_cluster() {
  case $CLUSTER_KIND in
    kind) run kind delete cluster --name "$NAME" ;;
    gke)
      if [[ -z $PROJECT && $DRY_RUN == 0 ]]; then
        PROJECT=$(gcloud config get-value project 2>/dev/null || true)
      fi
      [[ -n $PROJECT ]] || die "--cluster gke needs a project: --project ID or env PROJECT"
      run gcloud container clusters delete "$NAME" --project "$PROJECT" --location "$ZONE" --quiet
      echo "# check that no Filestore instance is left behind (they are billed):"
      run gcloud filestore instances list --project "$PROJECT"
      ;;
  esac
}

VARIANT=""
KEEP_PVC=0
NAMESPACE=""
OPERATORS=0
CLUSTER_KIND=""
NAME="${CLUSTER:-mnist}"
PROJECT="${PROJECT:-}"
ZONE="${ZONE:-us-central1-c}"
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --keep-pvc) KEEP_PVC=1 ;;
    --operators) OPERATORS=1 ;;
    --namespace | --cluster | --name | --project | --zone)
      [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$1 needs a value"
      case $1 in
        --namespace) NAMESPACE=$2 ;;
        --cluster) CLUSTER_KIND=$2 ;;
        --name) NAME=$2 ;;
        --project) PROJECT=$2 ;;
        --zone) ZONE=$2 ;;
      esac
      shift
      ;;
    cpu | gpu | cpu-trainjob | gpu-trainjob)
      [[ -z $VARIANT ]] || die "only one overlay, got $VARIANT and $1"
      VARIANT=$1
      ;;
    *) die "unknown argument '$1' (expected cpu, gpu, cpu-trainjob or gpu-trainjob; --help lists the options)" ;;
  esac
  shift
done

[[ -n $VARIANT ]] || die "which overlay was deployed? expected cpu or gpu (--help lists the options)"
case $CLUSTER_KIND in
  '' | kind | gke) ;;
  *) die "--cluster '$CLUSTER_KIND': expected kind or gke" ;;
esac
if [[ $KEEP_PVC == 1 && -n $CLUSTER_KIND ]]; then
  # The data would go with the cluster anyway; on GKE the Filestore instance would stay behind and be billed.
  die "--keep-pvc with --cluster makes no sense: deleting the cluster deletes the volume's data (kind) or strands its Filestore instance (gke)"
fi
if [[ -n $NAMESPACE && ! $NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]; then
  die "--namespace '$NAMESPACE' is not a valid namespace name"
fi
NS_FLAG=""
if [[ -n $NAMESPACE ]]; then
  NS_FLAG="--namespace=$NAMESPACE"
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OVERLAY="overlays/$VARIANT"
cd "$REPO"
[[ -f $OVERLAY/kustomization.yaml ]] || die "$REPO/$OVERLAY/kustomization.yaml not found"

delete_workloads
if [[ $OPERATORS == 1 ]]; then
  delete_operators
fi
if [[ -n $CLUSTER_KIND ]]; then
  delete_cluster
fi
