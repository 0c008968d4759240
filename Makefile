# Entry point for humans and CI alike: `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
export VENV ?= $(CURDIR)/.venv
UV := $(VENV)/uv/bin/uv
UV_INSTALL := $(UV) pip install --quiet --python
OVERLAYS := overlays/cpu overlays/gpu
export CRDS_DIR ?= $(abspath ../shared/crds)
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

$(VENV)/trainer/.installed: $(REQS_trainer)
$(VENV)/serving/.installed: $(REQS_serving)
$(VENV)/kserve/.installed: $(REQS_kserve)
$(VENV)/frontend/.installed: $(REQS_frontend)
$(VENV)/tools/.installed: $(REQS_tools)
$(VENV)/checkov/.installed: $(REQS_checkov)

ENVS := trainer serving kserve frontend tools checkov
.PHONY: venvs
venvs: $(foreach e,$(ENVS),$(VENV)/$(e)/.installed) ## Create every local environment (.venv/<component>).

# --- the two commands of the README ------------------------------------------
.PHONY: demo
demo: $(VENV)/trainer/.installed $(VENV)/serving/.installed $(VENV)/frontend/.installed $(VENV)/tools/.installed ## Run the whole stack locally from the rendered overlays/cpu manifests.
	$(VENV)/tools/bin/python scripts/run_local.py --overlay overlays/cpu

.PHONY: test
test: test-manifests test-trainer test-serving test-kserve test-frontend test-scripts test-demo ## Run every test suite (no cluster, no GPU, no network).

PYTEST_ARGS ?= -q
.PHONY: test-trainer test-serving test-kserve test-frontend test-manifests test-scripts test-demo
test-trainer: $(VENV)/trainer/.installed ## Trainer: model, data, real 2-process DDP (gloo), resume.
	$(VENV)/trainer/bin/python -m pytest $(PYTEST_ARGS) tests/trainer

test-serving: $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model server: the Seldon class and the real seldon-core-microservice.
	$(VENV)/serving/bin/python -m pytest $(PYTEST_ARGS) -m "not kserve" tests/serving

# The tests run in the Seldon environment and start the KServe server from its own (.venv/kserve).
test-kserve: $(VENV)/kserve/.installed $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model server: the real KServe ModelServer (V1, V2) and the hostile-input table on both servers.
	$(VENV)/serving/bin/python -m pytest $(PYTEST_ARGS) -m kserve tests/serving

test-frontend: $(VENV)/frontend/.installed $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Frontend: Flask test client, gunicorn and headless Chromium.
	$(VENV)/frontend/bin/python -m pytest $(PYTEST_ARGS) tests/frontend

test-manifests: $(VENV)/tools/.installed $(VENV)/checkov/.installed ## Manifests: render, strict schemas, cross-references, policy scan.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/manifests

test-scripts: $(VENV)/tools/.installed $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Tutorial scripts: --dry-run commands and predict.py.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/scripts

test-demo: $(VENV)/tools/.installed $(VENV)/trainer/.installed $(VENV)/serving/.installed $(VENV)/frontend/.installed ## Local runner: manifests to a served prediction.
	$(VENV)/tools/bin/python -m pytest $(PYTEST_ARGS) tests/demo

# --- lint ----------------------------------------------------------------------
SHELL_SCRIPTS = $(shell git ls-files '*.sh' .ci/run)
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
.PHONY: bench-train bench-serve bench-forward
bench-train: $(VENV)/trainer/.installed ## Training: 1x2 threads vs DDP 2x1 throughput, time to 98.5% on the 5k sample.
	$(VENV)/trainer/bin/python scripts/bench_train.py

bench-serve: $(VENV)/serving/.installed $(VENV)/kserve/.installed $(VENV)/trainer/.installed ## Serving: our Seldon and KServe servers vs the original tutorial's: wrk saturation, hey open-loop p50/p99.
	$(VENV)/serving/bin/python scripts/bench_serve.py

bench-forward: $(VENV)/serving/.installed $(VENV)/trainer/.installed ## Model: single-image forward on one thread, ours (plain and fused) vs pytorch/examples.
	$(VENV)/serving/bin/python scripts/bench_forward.py

# --- cluster helpers (see docs/01..05) -----------------------------------------
.PHONY: images
images: ## Build the images with docker or podman (REGISTRY=..., TAG=..., PUSH=1 to push; see docs/02).
	scripts/build-images.sh $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG)) $(if $(PUSH),--push)

.PHONY: crds
crds: ## Fetch the pinned upstream CRDs into .cache/crds (for a clone without ../shared).
	scripts/fetch-crds.sh .cache/crds
	@echo "now: export CRDS_DIR=$(abspath .cache/crds)"

.PHONY: clean
clean: ## Remove the local demo state (.demo/); keeps the environments.
	rm -rf .demo
