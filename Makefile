# Flotilla: `make run` to try it, `make test` to prove it. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: venv
venv: ## Create or refresh the virtualenv (.venv) with the services and tools
	@scripts/venv.sh

.PHONY: run
run: ## Run the three services on embedded defaults, with an example flow (Ctrl-C stops)
	@scripts/run.sh

.PHONY: lint
lint: venv ## ruff (lint and format check) and mypy
	@echo "==> ruff"
	@$(VENV)/bin/ruff check services operator tests
	@$(VENV)/bin/ruff format --check services operator tests
	@echo "==> mypy"
	@$(VENV)/bin/mypy services/kit/src services/users/src services/catalog/src services/orders/src operator/src services/kit/tests operator/tests tests

.PHONY: postgres-up
postgres-up: ## Start the test PostgreSQL (installs it from apt when missing)
	@scripts/postgres.sh up

.PHONY: postgres-down
postgres-down: ## Stop the test PostgreSQL and remove its data
	@scripts/postgres.sh down

.PHONY: cluster-build
cluster-build: ## Build the pinned control plane binaries from Go modules (cached)
	@scripts/cluster/build.sh

.PHONY: cluster-up
cluster-up: ## Start (or reuse) the local Kubernetes control plane; writes .cluster/kubeconfig
	@scripts/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local control plane and remove its state
	@scripts/cluster/down.sh

.PHONY: operator-run
operator-run: venv ## Install the Microservice CRD and run the operator against the current KUBECONFIG
	@$(VENV)/bin/python -m flotilla_operator install-crd
	@$(VENV)/bin/python -m flotilla_operator run

.PHONY: test
test: venv lint postgres-up cluster-up ## Everything: lint, then every test against real servers
	@echo "==> pytest"
	@$(VENV)/bin/pytest

.PHONY: format
format: venv ## Apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff format services operator tests
	@$(VENV)/bin/ruff check --fix services operator tests

.PHONY: clean
clean: ## Remove local state (.run, caches); keeps .venv
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
