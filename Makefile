# Flotilla: `make run` to try it, `make test` to prove it. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: venv
venv: ## Create or refresh the virtualenv (.venv) with the services and tools
	@scripts/venv.sh

.PHONY: run
run: ## Run every service of the list on embedded defaults, with an example flow (Ctrl-C stops)
	@scripts/run.sh

.PHONY: new-service
new-service: venv ## Make a service from the kit's template: make new-service NAME=<name> (database, auth)
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=<name> (flotilla new --help: the other choices)" >&2; exit 2; }
	@"$${FLOTILLA_VENV:-$(VENV)}/bin/flotilla" new "$(NAME)"

.PHONY: lint
lint: venv ## ruff (lint and format check) and mypy
	@echo "==> ruff"
	@$(VENV)/bin/ruff check services operator scripts tests
	@$(VENV)/bin/ruff format --check services operator scripts tests
	@echo "==> mypy"
	@$(VENV)/bin/mypy services/*/src operator/src scripts/dashboards.py scripts/services.py scripts/pipeline.py services/kit/tests operator/tests tests

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
cluster-down: ## Stop the local control plane (and node) and remove its state
	@scripts/cluster/down.sh

.PHONY: node-up
node-up: ## Start (or reuse) the control plane and a real node: registry, containerd, kubelet, kube-proxy, CoreDNS, Traefik (root)
	@scripts/cluster/node-up.sh

.PHONY: images
images: venv ## Build the platform's images (every service from services/Dockerfile) with buildah and push them to the node's registry
	@scripts/images.sh platform >/dev/null

.PHONY: release-local
release-local: venv ## What the release workflow does, against the node's registry: images and charts (oci://localhost:5000/charts)
	@scripts/release-local.sh

.PHONY: up
up: venv ## Run the whole platform on the real local node (root), installed from its registry: prints the URLs, the admin and an example flow
	@scripts/up.sh

.PHONY: down
down: ## Stop the node and the control plane, and remove their state (nothing is left behind)
	@scripts/cluster/down.sh

.PHONY: operator-run
operator-run: venv ## Install the Microservice CRD and run the operator against the current KUBECONFIG
	@$(VENV)/bin/python -m flotilla_operator install-crd
	@$(VENV)/bin/python -m flotilla_operator run

.PHONY: kind-up
kind-up: ## Create (or reuse) the kind cluster of k8s/kind-config.yaml with Traefik (Docker, kind; KIND_MONITORING=1: kube-prometheus-stack)
	@scripts/kind/up.sh

.PHONY: deploy
deploy: ## On kind (make kind-up): build and kind-load the images, helm upgrade --install the umbrella chart (namespace flotilla)
	@scripts/deploy.sh $(ARGS)

.PHONY: dev
dev: venv ## skaffold dev: on the kind cluster flotilla if there is one, else on the real local node (started first; root); Ctrl-C removes it
	@scripts/dev/dev.sh $(ARGS)

.PHONY: prometheus
prometheus: ## Install Prometheus and promtool (Debian's packages) when missing
	@scripts/prometheus.sh

.PHONY: wrk
wrk: ## Install wrk, the load generator of make bench (Debian's package) when missing
	@scripts/wrk.sh

.PHONY: jaeger
jaeger: ## Build Jaeger v2 from its pinned Go module when missing (the traced services' backend in tests and make bench)
	@scripts/cluster/build.sh jaeger

.PHONY: bench
bench: venv postgres-up cluster-up wrk jaeger ## Benchmarks, each beside its baseline: one line per figure (ARGS="services --seconds 5")
	@$(PY) -m tests.bench $(ARGS)

.PHONY: dashboards
dashboards: venv ## Regenerate charts/flotilla/dashboards/*.json from scripts/dashboards.py
	@$(PY) scripts/dashboards.py

# make test and its parts run through scripts/pipeline.py: a plan with expected durations, then
# the downloads and image builds beside the Go builds, with an ETA (ARGS=--plan: the plan only).
.PHONY: test
test: ## Everything: lint, then every test against real servers (prints its plan and ETA first)
	@python3 scripts/pipeline.py test $(ARGS)

.PHONY: prepare
prepare: ## What make test needs before its suites (virtualenv, PostgreSQL, the node, images, lint)
	@python3 scripts/pipeline.py prepare $(ARGS)

.PHONY: test-reliability
test-reliability: ## The reliability and security suite: fuzzing, attacks, faults; prints a summary table
	@python3 scripts/pipeline.py test-reliability $(ARGS)

.PHONY: test-e2e
test-e2e: ## Only the end-to-end suite on the real node
	@python3 scripts/pipeline.py test-e2e $(ARGS)

.PHONY: format
format: venv ## Apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff format services operator scripts tests
	@$(VENV)/bin/ruff check --fix services operator scripts tests

.PHONY: clean
clean: ## Remove local state (.run, caches); keeps .venv
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
