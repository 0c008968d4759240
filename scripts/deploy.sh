#!/usr/bin/env bash
# Steps 02-04 of the tutorial: apply an overlay, wait for the training job, the model server and the frontend.
set -euo pipefail

readonly PVC=mnist-pvc
readonly DEFAULT_CHECKPOINT_DIR=/mnt/pvc/checkpoints/mnist-ddp
readonly BUSYBOX=busybox:1.37

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh cpu|gpu|OVERLAY_DIR [options]

Apply overlays/cpu, overlays/gpu or any kustomization directory built on them (e.g.
overlays/gpu-trainjob, or my-overlay with 3 Workers) with kubectl apply -k, then wait until
  1. the training job has succeeded: the PyTorchJob mnist-ddp (or the TrainJob, with the
     Trainer v2 overlays) trains, then publishes the model on the PVC,
  2. the model server is ready: the SeldonDeployment mnist-classifier is Available (or the
     KServe InferenceService is Ready),
  3. the frontend Deployment has rolled out.
What to wait for is read from the overlay's rendering. It stops with the job's logs if
the job fails.

Without options it runs exactly `kubectl apply -k OVERLAY`. The options below
change the manifests without editing them: the script writes a throwaway kustomization
(printed with --dry-run) that has the overlay as its only resource and adds
  --registry/--tag        an `images:` entry per image (the same as `kustomize edit set image`)
  --namespace             `namespace:`, e.g. a Kubeflow profile namespace
  --storage-class         the PVC's storageClassName, e.g. standard-rwx on GKE (Filestore)
  --pvc-access-mode       the PVC's access mode, e.g. ReadWriteOnce on a single-node kind cluster

Options:
  --registry REGISTRY      registry of the images built by scripts/build-images.sh (default: as in the overlay)
  --tag TAG                tag of those images; the trainer's gets -gpu appended if the overlay asks for GPUs,
                           else -cpu (default: as in the overlay)
  --namespace NS           namespace to deploy into; it must exist (default: the current context's namespace)
  --storage-class NAME     storage class of the PVC mnist-pvc (default: the cluster's default class)
  --pvc-access-mode MODE   ReadWriteMany or ReadWriteOnce (default: ReadWriteMany, as in the manifests)
  --retrain                delete the finished training job and its checkpoint (in a short-lived busybox pod
                           that mounts the PVC; skipped when the PVC does not exist yet) first, so that it
                           trains from scratch and publishes a new version; needed after changing the number
                           of workers (default: keep both; `kubectl apply` does not restart a finished job)
  --timeout DURATION       how long to wait for the training job, e.g. 45m (default: 30m)
  --dry-run                print the commands that would change something, run nothing
                           (it still renders the overlay locally with `kubectl kustomize`)
  -h, --help               show this help

Examples:
  scripts/deploy.sh cpu --pvc-access-mode ReadWriteOnce --registry localhost --tag dev   # kind
  scripts/deploy.sh gpu --registry ghcr.io/you --tag 0.1.0 --storage-class standard-rwx  # GKE
  scripts/deploy.sh cpu --namespace kubeflow-user-example-com --retrain
  scripts/deploy.sh my-overlay --retrain --storage-class standard-rwx                  # your own overlay
EOF
}

# shellcheck source=lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh"

# An image reference without its tag or digest: ghcr.io:443/you/mnist-trainer:1-cpu -> ghcr.io:443/you/mnist-trainer
image_name() {
  local ref=${1%@*}
  if [[ ${ref##*/} == *:* ]]; then
    ref=${ref%:*}
  fi
  echo "$ref"
}

# The kustomization that wraps the overlay; written to stdout.
wrapper_kustomization() {
  local overlay_from_wrapper=$1 ref name base
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - $overlay_from_wrapper"
  if [[ -n $NAMESPACE ]]; then
    echo "namespace: $NAMESPACE"
  fi
  if [[ -n $REGISTRY || -n $TAG ]]; then
    echo "images:"
    # The overlay may already have renamed the images: match the names it renders.
    for ref in $IMAGE_REFS; do
      name=$(image_name "$ref")
      base=${name##*/}
      echo "  - name: $name"
      if [[ -n $REGISTRY ]]; then
        echo "    newName: $REGISTRY/$base"
      fi
      if [[ -n $TAG && $base == mnist-trainer ]]; then
        echo "    newTag: $TAG-$(trainer_variant)"
      elif [[ -n $TAG ]]; then
        echo "    newTag: $TAG"
      fi
    done
  fi
  if [[ -n $STORAGE_CLASS || -n $ACCESS_MODE ]]; then
    echo "patches:"
    echo "  - target: {kind: PersistentVolumeClaim, name: mnist-pvc}"
    echo "    patch: |-"
    if [[ -n $STORAGE_CLASS ]]; then
      echo "      - {op: add, path: /spec/storageClassName, value: $STORAGE_CLASS}"
    fi
    if [[ -n $ACCESS_MODE ]]; then
      echo "      - {op: replace, path: /spec/accessModes, value: [$ACCESS_MODE]}"
    fi
  fi
}

# The distinct image references of the overlay's mnist-* containers, as kustomize renders them.
rendered_images() {
  sed -n 's/^ *-\{0,1\} *image: *["'\'']\{0,1\}\([^"'\'' ]*mnist-[a-z]*[^"'\'' ]*\).*/\1/p' <<<"$RENDERED" | sort -u
}

# gpu if the overlay asks for GPUs (the trainer image with CUDA wheels), else cpu.
trainer_variant() {
  if grep -q 'nvidia.com/gpu' <<<"$RENDERED"; then echo gpu; else echo cpu; fi
}

# Kind/name of every object the overlay renders, one per line, e.g. PyTorchJob/mnist-ddp.
rendered_objects() {
  awk '
    function emit() { if (kind != "" && name != "") print kind "/" name; kind = ""; name = "" }
    /^---/ { emit(); inmeta = 0; next }
    /^kind: / { kind = $2 }
    /^metadata:/ { inmeta = 1; next }
    /^[^ ]/ { inmeta = 0 }
    inmeta && /^  name: / && name == "" { name = $2 }
    END { emit() }' <<<"$RENDERED"
}

# The name of the first rendered object of kind $1, or nothing.
rendered_name() {
  rendered_objects | sed -n "s|^$1/||p" | head -n 1
}

# What to wait for, from the rendering: the training job, the model server, the frontend Deployments.
read_workloads() {
  JOB=$(rendered_name PyTorchJob)
  JOB_KIND=pytorchjob
  JOB_CRD=pytorchjobs.kubeflow.org
  JOB_DONE=Succeeded
  JOB_PODS="training.kubeflow.org/job-name=$JOB"
  if [[ -z $JOB ]]; then
    JOB=$(rendered_name TrainJob)
    JOB_KIND=trainjob
    JOB_CRD=trainjobs.trainer.kubeflow.org
    JOB_DONE=Complete
    JOB_PODS="jobset.sigs.k8s.io/jobset-name=$JOB"
  fi
  [[ -n $JOB ]] || die "$OVERLAY renders no PyTorchJob or TrainJob (kubectl kustomize $OVERLAY)"
  SERVER=$(rendered_name SeldonDeployment)
  SERVER_KIND=seldondeployment
  SERVER_CRD=seldondeployments.machinelearning.seldon.io
  if [[ -z $SERVER ]]; then
    SERVER=$(rendered_name InferenceService)
    SERVER_KIND=inferenceservice
    SERVER_CRD=inferenceservices.serving.kserve.io
  fi
  [[ -n $SERVER ]] || die "$OVERLAY renders no SeldonDeployment or InferenceService (kubectl kustomize $OVERLAY)"
  FRONTENDS=$(rendered_objects | sed -n 's|^Deployment/||p')
  CHECKPOINT_DIR=$(sed -n 's/.*--checkpoint-dir[= ]\(\/[^"'\'' ]*\).*/\1/p' <<<"$RENDERED" | head -n 1)
  CHECKPOINT_DIR=${CHECKPOINT_DIR:-$DEFAULT_CHECKPOINT_DIR}
}

# A path from directory $1 to $OVERLAY_ABS: kustomize accepts only relative paths to other kustomizations.
relative_overlay_path() {
  local up="" rest=${1#/}
  while [[ -n $rest ]]; do
    up+="../"
    if [[ $rest == */* ]]; then rest=${rest#*/}; else rest=""; fi
  done
  echo "${up}${OVERLAY_ABS#/}"
}

apply_manifests() {
  if [[ -z $REGISTRY && -z $TAG && -z $NAMESPACE && -z $STORAGE_CLASS && -z $ACCESS_MODE ]]; then
    run kubectl apply -k "$OVERLAY"
    return
  fi
  local dir
  if [[ -n $REGISTRY || -n $TAG ]]; then
    IMAGE_REFS=$(rendered_images)
    [[ -n $IMAGE_REFS ]] || die "found no mnist-* images in $OVERLAY (kubectl kustomize $OVERLAY)"
  fi
  if [[ $DRY_RUN == 1 ]]; then
    dir=/tmp/mnist-deploy.XXXXXX
    echo "+ cat > $dir/kustomization.yaml <<'EOF'"
    wrapper_kustomization "$(relative_overlay_path "$dir")"
    echo "EOF"
  else
    dir=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/mnist-deploy.XXXXXX")" && pwd -P)
    WRAPPER_DIR=$dir
    wrapper_kustomization "$(relative_overlay_path "$dir")" >"$dir/kustomization.yaml"
    echo "+ cat > $dir/kustomization.yaml <<'EOF'"
    cat "$dir/kustomization.yaml"
    echo "EOF"
  fi
  run kubectl apply -k "$dir"
}

# The trainer resumes from its checkpoint, and refuses one written with other settings: remove it.
# On a first deploy there is no claim yet, hence no checkpoint: a pod mounting it would only wait for it.
clear_checkpoint() {
  if [[ $DRY_RUN == 0 ]] && ! kubectl get "pvc/$PVC" ${NS_FLAG:+"$NS_FLAG"} >/dev/null 2>&1; then
    echo "# no PVC $PVC yet: no checkpoint to clear"
    return
  fi
  local overrides
  overrides='{"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": {'
  overrides+='"securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, '
  overrides+='"seccompProfile": {"type": "RuntimeDefault"}}, '
  overrides+='"containers": [{"name": "clear", "image": "'"$BUSYBOX"'", "command": ["rm", "-rf", "'"$CHECKPOINT_DIR"'"], '
  overrides+='"securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}, '
  overrides+='"volumeMounts": [{"name": "pvc", "mountPath": "/mnt/pvc"}]}], '
  overrides+='"volumes": [{"name": "pvc", "persistentVolumeClaim": {"claimName": "'"$PVC"'"}}]}}'
  run kubectl run mnist-clear-checkpoint ${NS_FLAG:+"$NS_FLAG"} --image="$BUSYBOX" --restart=Never --rm -i --quiet \
    --pod-running-timeout=5m --overrides="$overrides"
}

job_state() {
  kubectl get "$JOB_KIND/$JOB" ${NS_FLAG:+"$NS_FLAG"} -o 'jsonpath={.status.conditions[-1:].type}' 2>/dev/null || true
}

show_job_logs() {
  local role
  if [[ $JOB_KIND == trainjob ]]; then
    echo "--- logs of the training pods, last 40 lines ---" >&2
    kubectl logs ${NS_FLAG:+"$NS_FLAG"} --tail=40 --prefix --selector "$JOB_PODS" >&2 || true
    return
  fi
  for role in master worker; do
    echo "--- logs of the $role pod(s), last 40 lines ---" >&2
    kubectl logs ${NS_FLAG:+"$NS_FLAG"} --tail=40 --prefix \
      --selector "$JOB_PODS,training.kubeflow.org/replica-type=$role" >&2 || true
  done
}

# Prints the `kubectl wait` a person would type; runs the same wait in 15 s slices instead, because
# `kubectl wait --for=condition=Succeeded` alone would sit out the whole timeout on a failed job.
wait_for_job() {
  print_command kubectl wait "--for=condition=$JOB_DONE" "$JOB_KIND/$JOB" ${NS_FLAG:+"$NS_FLAG"} "--timeout=$TIMEOUT"
  if [[ $DRY_RUN == 1 ]]; then
    return
  fi
  local seconds waited=0 state="" last=""
  seconds=$(duration_seconds "$TIMEOUT")
  while ((waited < seconds)); do
    if kubectl wait "--for=condition=$JOB_DONE" "$JOB_KIND/$JOB" ${NS_FLAG:+"$NS_FLAG"} --timeout=15s >/dev/null 2>&1; then
      echo "# $JOB_KIND/$JOB $JOB_DONE after about ${waited}s"
      return 0
    fi
    state=$(job_state)
    if [[ $state == Failed ]]; then
      echo "deploy.sh: $JOB_KIND/$JOB Failed" >&2
      kubectl describe "$JOB_KIND/$JOB" ${NS_FLAG:+"$NS_FLAG"} | tail -n 15 >&2 || true
      show_job_logs
      exit 1
    fi
    if [[ $state != "$last" ]]; then
      echo "# $JOB_KIND/$JOB: ${state:-not started yet} (${waited}s)"
      last=$state
    fi
    waited=$((waited + 15))
  done
  echo "deploy.sh: $JOB_KIND/$JOB did not succeed within $TIMEOUT (state: ${state:-unknown})" >&2
  kubectl get pods ${NS_FLAG:+"$NS_FLAG"} --selector "$JOB_PODS" >&2 || true
  show_job_logs
  exit 1
}

# 30m -> 1800, 90s -> 90, 2h -> 7200
duration_seconds() {
  local value=${1%[smh]} unit=${1: -1}
  case $unit in
    s) echo "$value" ;;
    m) echo $((value * 60)) ;;
    h) echo $((value * 3600)) ;;
  esac
}

cleanup() {
  if [[ -n $WRAPPER_DIR ]]; then
    rm -rf "$WRAPPER_DIR"
  fi
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OVERLAY_ARG=""
REGISTRY=""
TAG=""
NAMESPACE=""
STORAGE_CLASS=""
ACCESS_MODE=""
RETRAIN=0
TIMEOUT=30m
DRY_RUN=0
WRAPPER_DIR=""
IMAGE_REFS=""

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --retrain) RETRAIN=1 ;;
    --registry | --tag | --namespace | --storage-class | --pvc-access-mode | --timeout)
      [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$1 needs a value"
      case $1 in
        --registry) REGISTRY=${2%/} ;;
        --tag) TAG=$2 ;;
        --namespace) NAMESPACE=$2 ;;
        --storage-class) STORAGE_CLASS=$2 ;;
        --pvc-access-mode) ACCESS_MODE=$2 ;;
        --timeout) TIMEOUT=$2 ;;
      esac
      shift
      ;;
    -*) die "unknown option '$1' (--help lists the options)" ;;
    *)
      [[ -z $OVERLAY_ARG ]] || die "only one overlay, got $OVERLAY_ARG and $1"
      OVERLAY_ARG=$1
      ;;
  esac
  shift
done

[[ -n $OVERLAY_ARG ]] || die "which overlay? expected cpu, gpu or an overlay directory (--help lists the options)"
resolve_overlay "$OVERLAY_ARG"
[[ $TIMEOUT =~ ^[1-9][0-9]*[smh]$ ]] || die "--timeout '$TIMEOUT': expected a number and s, m or h, e.g. 30m"
case $ACCESS_MODE in
  '' | ReadWriteMany | ReadWriteOnce) ;;
  *) die "--pvc-access-mode '$ACCESS_MODE': expected ReadWriteMany or ReadWriteOnce" ;;
esac
if [[ -n $NAMESPACE && ! $NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]; then
  die "--namespace '$NAMESPACE' is not a valid namespace name"
fi
if [[ -n $TAG && ! $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$ ]]; then
  die "--tag '$TAG' is not a valid image tag"
fi
NS_FLAG=""
if [[ -n $NAMESPACE ]]; then
  NS_FLAG="--namespace=$NAMESPACE"
fi
trap cleanup EXIT
cd "$REPO"

command -v kubectl >/dev/null 2>&1 || die "kubectl is not installed (it also renders $OVERLAY)"
RENDERED=$(kubectl kustomize "$OVERLAY_ABS") || die "kubectl kustomize $OVERLAY failed"
read_workloads
if [[ $DRY_RUN == 0 ]]; then
  kubectl get crd "$JOB_CRD" "$SERVER_CRD" >/dev/null ||
    die "the CRDs of $OVERLAY ($JOB_CRD, $SERVER_CRD) are not installed: run scripts/setup-cluster.sh first"
  if [[ -n $NAMESPACE ]]; then
    kubectl get namespace "$NAMESPACE" >/dev/null || die "namespace $NAMESPACE does not exist"
  fi
fi

if [[ $RETRAIN == 1 ]]; then
  run kubectl delete "$JOB_KIND/$JOB" ${NS_FLAG:+"$NS_FLAG"} --ignore-not-found --wait=true
  clear_checkpoint
fi
apply_manifests
if [[ $JOB_KIND == pytorchjob ]]; then
  echo "# training: kubectl logs -f ${NS_FLAG:+$NS_FLAG }$JOB-master-0"
else
  # Node 0's pod (completion index 0), the rank that logs and publishes.
  echo "# training: kubectl logs -f ${NS_FLAG:+$NS_FLAG }-l $JOB_PODS,batch.kubernetes.io/job-completion-index=0"
fi
wait_for_job
if [[ $SERVER_KIND == seldondeployment ]]; then
  run kubectl wait --for=jsonpath='{.status.state}'=Available "seldondeployment/$SERVER" ${NS_FLAG:+"$NS_FLAG"} --timeout=10m
else
  run kubectl wait --for=condition=Ready "inferenceservice/$SERVER" ${NS_FLAG:+"$NS_FLAG"} --timeout=10m
fi
for frontend in $FRONTENDS; do
  run kubectl rollout status "deployment/$frontend" ${NS_FLAG:+"$NS_FLAG"} --timeout=5m
done
if [[ $SERVER_KIND == seldondeployment ]]; then
  echo "# deployed. Query the model:  kubectl port-forward ${NS_FLAG:+$NS_FLAG }svc/$SERVER-default 8000:8000"
  echo "#               then:         python3 scripts/predict.py --mnist-index 0 --data-dir data/mnist   (or IMAGE.png;"
  echo "#                             docs/03_serving.md shows how to copy test digits out of the cluster)"
else
  echo "# deployed. Query the model:  see docs/03_serving.md (InferenceService $SERVER)"
fi
for frontend in $FRONTENDS; do
  echo "# Open the frontend:          kubectl port-forward ${NS_FLAG:+$NS_FLAG }svc/$frontend 8080:80, then http://localhost:8080"
done
