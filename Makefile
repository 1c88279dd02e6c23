# aws-auth-operator. `make help` lists the targets (each documented by its `## ` comment).

CARGO ?= cargo
PYTHON ?= python3
# Container engine and image for `make docker`.
ENGINE ?= docker
IMAGE ?= aws-auth-operator:dev
# The commit the aws_auth_operator_build_info metric names (`make build`, `make docker`).
GIT_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
# The venv of the packaging tests (tests/chart); .ci/run makes its own (ci-venv/).
VENV ?= .venv
# Arguments of the load tool (`make load LOAD_ARGS="--count 5000"`).
LOAD_ARGS ?= --count 1000

CRD := crds/iamidentitymappings.awsauth.dev.yaml
CHART_CRD := charts/aws-auth-operator/crds/iamidentitymappings.awsauth.dev.yaml

.DEFAULT_GOAL := help
.PHONY: help all build test lint fmt crds crd render demo bench e2e load venv chart-test chart-docs docker ci clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: lint test ## lint + test

build: ## Release build of the operator (target/release/aws-auth-operator)
	AWS_AUTH_OPERATOR_GIT_COMMIT=$(GIT_COMMIT) $(CARGO) build --release --locked

test: ## The README's test command: cargo test --locked (runs the chart tests too once `make venv` made .venv)
	$(CARGO) test --locked

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt: ## Format the Rust sources
	$(CARGO) fmt --all

crds: ## Regenerate crds/, the chart's copy and deploy/install.yaml from src/api.rs (CI fails when stale)
	$(CARGO) run --quiet --locked -- crd > $(CRD)
	cp $(CRD) $(CHART_CRD)
	@if [ -x $(VENV)/bin/python ]; then AWS_AUTH_OPERATOR_BIN=target/debug/aws-auth-operator $(VENV)/bin/python tests/chart/generate.py; \
	else echo "deploy/install.yaml holds the CRD too: run \`make chart-docs\`"; fi

crd: crds ## Alias of crds

render: ## Render the examples offline into an aws-auth ConfigMap
	$(CARGO) run --quiet --locked -- render examples/

demo: ## The operator against the built-in test API server (no cluster) on the examples
	$(CARGO) run --quiet --locked -- demo

bench: ## Criterion benchmarks of render, parse and plan
	$(CARGO) bench --locked --bench core

e2e: ## End-to-end tests: the cluster of AWS_AUTH_OPERATOR_E2E_KUBECONFIG, else the test API server
	$(CARGO) test --locked --test e2e -- --nocapture

load: ## Load test (docs/load.md): the current kubeconfig's cluster, or LOAD_ARGS="--simulate --count 5000"
	$(CARGO) build --release --locked --bin aws-auth-operator --example load
	target/release/examples/load $(LOAD_ARGS)

venv: $(VENV)/.installed ## Python venv with the tools of the chart tests (Helm 4 engine, Lua 5.1, CEL)

$(VENV)/.installed: tests/chart/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/chart/requirements.txt
	touch $@

chart-test: venv ## Helm chart, deploy/install.yaml, Dockerfile, GitOps and admission-guard tests (tests/packaging.rs, tests/admission_policy.rs)
	AWS_AUTH_OPERATOR_PYTHON=$(abspath $(VENV))/bin/python $(CARGO) test --locked --test packaging --test admission_policy -- --nocapture

chart-docs: venv ## Regenerate deploy/install.yaml, the chart's values table, docs/cli.md, argocd-cm.yaml
	$(CARGO) test --locked --no-run --test packaging
	AWS_AUTH_OPERATOR_BIN=target/debug/aws-auth-operator $(VENV)/bin/python tests/chart/generate.py

docker: ## Build the container image (IMAGE=aws-auth-operator:dev, ENGINE=docker)
	$(ENGINE) build --build-arg AWS_AUTH_OPERATOR_GIT_COMMIT=$(GIT_COMMIT) -t $(IMAGE) .

ci: ## Exactly what CI runs (bash .ci/run)
	bash .ci/run

clean: ## Remove build outputs and the venv
	$(CARGO) clean
	rm -rf $(VENV)
