#!/usr/bin/env bash
# Step 02 of the tutorial: build every image (trainer CPU and GPU, Seldon and KServe servers, frontend, pipeline steps, TensorBoard), optionally push or load into kind.
set -euo pipefail

# Where trainer/Dockerfile installs torch from (its build argument TORCH_INDEX): CPU wheels, or CUDA ones.
readonly TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu
readonly TORCH_INDEX_GPU=https://download.pytorch.org/whl/cu130

usage() {
  cat <<'EOF'
Usage: scripts/build-images.sh [options]

Build the tutorial's images from the repository root with docker or podman:
  REGISTRY/mnist-trainer:TAG-cpu    trainer/Dockerfile, TORCH_INDEX=https://download.pytorch.org/whl/cpu
  REGISTRY/mnist-trainer:TAG-gpu    trainer/Dockerfile, TORCH_INDEX=https://download.pytorch.org/whl/cu130 (large)
  REGISTRY/mnist-serving:TAG        serving/Dockerfile
  REGISTRY/mnist-frontend:TAG       frontend/Dockerfile
  REGISTRY/mnist-kserve:TAG         serving/kserve_predictor/Dockerfile
  REGISTRY/mnist-pipelines:TAG      pipelines/Dockerfile
  REGISTRY/mnist-tensorboard:TAG    tensorboard/Dockerfile
then push them (--push) or load them into a kind cluster (--kind-load).

Options:
  --registry REGISTRY  image registry and path, e.g. ghcr.io/you or us-docker.pkg.dev/PROJECT/mnist
                       (default: env REGISTRY, else localhost: fine for --kind-load, not for --push)
  --tag TAG            image tag (default: env TAG, else the short git commit, else dev)
  --trainer VARIANTS   trainer images to build: cpu, gpu or both (default: both)
  --engine ENGINE      docker or podman (default: env CONTAINER_ENGINE, else docker if installed, else podman)
  --platform PLATFORM  target platform, e.g. linux/amd64 when building on an arm64 laptop for a cloud
                       cluster (default: the engine's own platform)
  --push               push the images after building them (default: do not push)
  --kind-load NAME     load the images into the kind cluster NAME after building (default: do not load)
  --dry-run            print the commands, run nothing
  -h, --help           show this help

Then point the manifests at the images: scripts/deploy.sh cpu --registry REGISTRY --tag TAG
(or, with the kustomize binary: cd overlays/cpu && kustomize edit set image mnist-trainer=REGISTRY/mnist-trainer:TAG-cpu ...).

Examples:
  scripts/build-images.sh --trainer cpu --kind-load mnist
  scripts/build-images.sh --registry ghcr.io/you --tag 0.1.0 --platform linux/amd64 --push
EOF
}

# shellcheck source=lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh"

default_tag() {
  git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo dev
}

default_engine() {
  if command -v docker >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  else
    echo docker
  fi
}

# build IMAGE DOCKERFILE [extra build arguments...]
build() {
  local image=$1 dockerfile=$2
  shift 2
  local args=(build --file "$dockerfile" --tag "$image")
  if [[ -n $PLATFORM ]]; then
    args+=(--platform "$PLATFORM")
  fi
  run "$ENGINE" "${args[@]}" "$@" .
}

# The CPU and GPU trainer images differ only in the PyTorch wheels (see trainer/Dockerfile).
build_trainer() {
  local variant=$1 index=$TORCH_INDEX_CPU
  if [[ $variant == gpu ]]; then
    index=$TORCH_INDEX_GPU
  fi
  build "$REGISTRY/mnist-trainer:$TAG-$variant" trainer/Dockerfile --build-arg "TORCH_INDEX=$index"
}

# With Docker's containerd image store (the default of Docker Desktop and of Docker 29), `kind load
# docker-image` fails with "content digest ... not found": kind imports every platform of the image's
# index, and the store holds only one. A single-platform archive loads either way.
kind_load() {
  local image=$1
  if [[ $ENGINE == docker ]]; then
    print_command kind load docker-image "$image" --name "$KIND_CLUSTER"
    if [[ $DRY_RUN == 1 ]] || kind load docker-image "$image" --name "$KIND_CLUSTER"; then
      return
    fi
    echo "# kind load docker-image failed (with Docker's containerd image store it does): loading a single-platform archive instead"
  fi
  kind_load_archive "$image"
}

# docker (image) save or podman save into an archive, then kind load image-archive.
kind_load_archive() {
  local image=$1 archive platform save=(save)
  archive="${TMPDIR:-/tmp}/mnist-image-$$.tar"
  if [[ $ENGINE == docker ]]; then
    platform=${PLATFORM:-$(docker version --format '{{.Server.Os}}/{{.Server.Arch}}' 2>/dev/null || true)}
    save=(image save ${platform:+--platform "$platform"})
  fi
  run "$ENGINE" "${save[@]}" --output "$archive" "$image"
  run kind load image-archive "$archive" --name "$KIND_CLUSTER"
  run rm -f "$archive"
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REGISTRY="${REGISTRY:-localhost}"
TAG="${TAG:-}"
TRAINER=both
ENGINE="${CONTAINER_ENGINE:-}"
PLATFORM=""
PUSH=0
KIND_CLUSTER=""
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --push) PUSH=1 ;;
    --registry | --tag | --trainer | --engine | --platform | --kind-load)
      [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$1 needs a value"
      case $1 in
        --registry) REGISTRY=$2 ;;
        --tag) TAG=$2 ;;
        --trainer) TRAINER=$2 ;;
        --engine) ENGINE=$2 ;;
        --platform) PLATFORM=$2 ;;
        --kind-load) KIND_CLUSTER=$2 ;;
      esac
      shift
      ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
  shift
done

TAG="${TAG:-$(default_tag)}"
ENGINE="${ENGINE:-$(default_engine)}"
REGISTRY="${REGISTRY%/}"
case $TRAINER in
  cpu) VARIANTS=(cpu) ;;
  gpu) VARIANTS=(gpu) ;;
  both) VARIANTS=(cpu gpu) ;;
  *) die "--trainer '$TRAINER': expected cpu, gpu or both" ;;
esac
[[ $ENGINE == docker || $ENGINE == podman ]] || die "--engine '$ENGINE': expected docker or podman"
[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$ ]] || die "--tag '$TAG' is not a valid image tag"
[[ $REGISTRY =~ ^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?$ ]] || die "--registry '$REGISTRY': expected lower-case host[:port][/path]"
if [[ $PUSH == 1 && $REGISTRY == localhost ]]; then
  die "--push needs --registry (where should the images go? e.g. --registry ghcr.io/you)"
fi
if [[ $DRY_RUN == 0 ]]; then
  command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE is not installed (or pass --engine)"
  if [[ -n $KIND_CLUSTER ]]; then
    command -v kind >/dev/null 2>&1 || die "kind is not installed, needed by --kind-load"
  fi
fi

cd "$REPO"
IMAGES=()
for variant in "${VARIANTS[@]}"; do
  build_trainer "$variant"
  IMAGES+=("$REGISTRY/mnist-trainer:$TAG-$variant")
done
build "$REGISTRY/mnist-serving:$TAG" serving/Dockerfile
build "$REGISTRY/mnist-frontend:$TAG" frontend/Dockerfile
# The KServe predictor (overlays/*-kserve), the pipeline steps (pipelines/) and TensorBoard (components/tensorboard).
build "$REGISTRY/mnist-kserve:$TAG" serving/kserve_predictor/Dockerfile
build "$REGISTRY/mnist-pipelines:$TAG" pipelines/Dockerfile
build "$REGISTRY/mnist-tensorboard:$TAG" tensorboard/Dockerfile
IMAGES+=("$REGISTRY/mnist-serving:$TAG" "$REGISTRY/mnist-frontend:$TAG" "$REGISTRY/mnist-kserve:$TAG")
IMAGES+=("$REGISTRY/mnist-pipelines:$TAG" "$REGISTRY/mnist-tensorboard:$TAG")

for image in "${IMAGES[@]}"; do
  if [[ $PUSH == 1 ]]; then
    run "$ENGINE" push "$image"
  fi
  if [[ -n $KIND_CLUSTER ]]; then
    kind_load "$image"
  fi
done

echo "# images built; deploy them with: scripts/deploy.sh cpu --registry $REGISTRY --tag $TAG   (or gpu)"
