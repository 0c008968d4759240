#!/usr/bin/env bash
# Fetch the pinned upstream CRDs that tests/manifests validates the rendered manifests against.
set -euo pipefail

readonly TRAINING_OPERATOR_TAG="v1.9.4"
readonly TRAINER_TAG="v2.3.0"
readonly SELDON_CORE_TAG="v1.17.1"
readonly KSERVE_TAG="v0.20.0"
readonly RAW=https://raw.githubusercontent.com
# name, source URL, sha256 (the files that ../shared/crds holds).
readonly FILES=(
  "kubeflow.org_pytorchjobs.yaml"
  "$RAW/kubeflow/trainer/${TRAINING_OPERATOR_TAG}/manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
  "8b8a8a719cc94173169290251e817f7ac2bb425c20b6c2fa813397bcf4e932ed"
  "machinelearning.seldon.io_seldondeployments.yaml"
  "$RAW/SeldonIO/seldon-core/${SELDON_CORE_TAG}/operator/config/crd_v1/bases/machinelearning.seldon.io_seldondeployments.yaml"
  "94286c86a405436eb5aa1a15e229d00eea60a5dcd9b9e87550a07ec10242ff6a"
  "trainer.kubeflow.org_trainjobs.yaml"
  "$RAW/kubeflow/trainer/${TRAINER_TAG}/manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml"
  "a742cafc5b5582640c7e0b7467c024fc237256fbca5ba0a9f0531dfb66d64416"
  "trainer.kubeflow.org_trainingruntimes.yaml"
  "$RAW/kubeflow/trainer/${TRAINER_TAG}/manifests/base/crds/trainer.kubeflow.org_trainingruntimes.yaml"
  "69b8dbdf60a18e28cddcc2b8dfc4ce72a943e14b531b9389d593118faee4919f"
  "trainer.kubeflow.org_clustertrainingruntimes.yaml"
  "$RAW/kubeflow/trainer/${TRAINER_TAG}/manifests/base/crds/trainer.kubeflow.org_clustertrainingruntimes.yaml"
  "ec84dc3388fcdbe8c61d3c247a773d14458dd9438e995bea8e50d2a18080eef9"
  "runtime-torch_distributed.yaml"
  "$RAW/kubeflow/trainer/${TRAINER_TAG}/manifests/base/runtimes/torch_distributed.yaml"
  "c4520df54615d481831d402e644dbeaf77a7a521eae87b2e80fd5f789aac5df2"
  "serving.kserve.io_inferenceservices.yaml"
  "$RAW/kserve/kserve/${KSERVE_TAG}/config/crd/full/serving.kserve.io_inferenceservices.yaml"
  "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff"
)

usage() {
  cat <<USAGE
Usage: scripts/fetch-crds.sh [--dry-run] [DEST]

Download the upstream files that tests/manifests validates against into DEST
(default: .cache/crds), and check each file's sha256:
  - the PyTorchJob CRD (Kubeflow Training Operator ${TRAINING_OPERATOR_TAG}; the repository is now kubeflow/trainer),
  - the TrainJob, TrainingRuntime and ClusterTrainingRuntime CRDs and the torch-distributed
    runtime (Kubeflow Trainer ${TRAINER_TAG}),
  - the SeldonDeployment CRD (Seldon Core ${SELDON_CORE_TAG}),
  - the InferenceService CRD (KServe ${KSERVE_TAG}).
It ends by printing the line that points the manifest tests at them:
export CRDS_DIR=<absolute path of DEST>. make test runs it by itself when ../shared/crds
is absent and CRDS_DIR is unset.

Options:
  --dry-run   print the commands instead of running them
  -h, --help  show this help
USAGE
}

dry_run=0
dest=".cache/crds"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run)
      dry_run=1
      shift
      ;;
    -*)
      echo "fetch-crds.sh: unknown option $1 (see --help)" >&2
      exit 2
      ;;
    *)
      dest="$1"
      shift
      ;;
  esac
done

run() {
  if [[ "$dry_run" -eq 1 ]]; then
    local quoted
    quoted="$(printf '%q ' "$@")"
    echo "${quoted% }"
  else
    "$@"
  fi
}

sha256_check() {
  # sha256sum on Linux, shasum on macOS; both read "<sum>  <file>" lines.
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum --check --status
  else
    shasum -a 256 --check --status
  fi
}

run mkdir -p "$dest"
for ((i = 0; i < ${#FILES[@]}; i += 3)); do
  name="${FILES[i]}"
  url="${FILES[i + 1]}"
  sum="${FILES[i + 2]}"
  run curl --fail --silent --show-error --location --retry 3 --output "$dest/$name.part" "$url"
  if [[ "$dry_run" -eq 1 ]]; then
    echo "echo '$sum  $dest/$name.part' | sha256sum --check"
  elif ! echo "$sum  $dest/$name.part" | sha256_check; then
    echo "fetch-crds.sh: $url does not have the pinned sha256 $sum" >&2
    rm -f "$dest/$name.part"
    exit 1
  fi
  run mv "$dest/$name.part" "$dest/$name"
done
if [[ "$dry_run" -eq 0 ]]; then
  echo "CRDs in $dest: export CRDS_DIR=$(cd "$dest" && pwd)"
fi
