# Entry point for humans and CI alike: `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
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
REQS_frontend := frontend/requirements.txt tests/requirements.txt tests/requirements-browser.txt
REQS_tools := scripts/requirements.txt tests/requirements.txt
REQS_checkov := scripts/requirements-checkov.txt

$(VENV)/trainer/.installed: $(REQS_trainer)
$(VENV)/serving/.installed: $(REQS_serving)
$(VENV)/frontend/.installed: $(REQS_frontend)
$(VENV)/tools/.installed: $(REQS_tools)
$(VENV)/checkov/.installed: $(REQS_checkov)

ENVS := trainer serving frontend tools checkov
.PHONY: venvs
venvs: $(foreach e,$(ENVS),$(VENV)/$(e)/.installed) ## Create every local environment (.venv/<component>).
