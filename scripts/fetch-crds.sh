#!/usr/bin/env bash
# Fetch the pinned upstream CRDs that tests/manifests validates the rendered manifests against.
set -euo pipefail

readonly TRAINING_OPERATOR_TAG="v1.9.4"
readonly SELDON_CORE_TAG="v1.17.1"
# name, source URL, sha256 (the files that ../shared/crds holds).
readonly FILES=(
  "kubeflow.org_pytorchjobs.yaml"
  "https://raw.githubusercontent.com/kubeflow/trainer/${TRAINING_OPERATOR_TAG}/manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
  "8b8a8a719cc94173169290251e817f7ac2bb425c20b6c2fa813397bcf4e932ed"
  "machinelearning.seldon.io_seldondeployments.yaml"
  "https://raw.githubusercontent.com/SeldonIO/seldon-core/${SELDON_CORE_TAG}/operator/config/crd_v1/bases/machinelearning.seldon.io_seldondeployments.yaml"
  "94286c86a405436eb5aa1a15e229d00eea60a5dcd9b9e87550a07ec10242ff6a"
)

usage() {
  cat <<USAGE
Usage: scripts/fetch-crds.sh [--dry-run] [DEST]

Download the PyTorchJob CRD (Kubeflow Training Operator ${TRAINING_OPERATOR_TAG}; the repository
is now kubeflow/trainer) and the SeldonDeployment CRD (Seldon Core ${SELDON_CORE_TAG}) into DEST
(default: .cache/crds), and check each file's sha256. It ends by printing the line that
points the manifest tests at them: export CRDS_DIR=<absolute path of DEST>.

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
