.PHONY: all build test lint fmt crd render bench docker ci clean

CARGO ?= cargo
IMAGE ?= aws-auth-operator:dev

all: lint test

build:
	$(CARGO) build --release --locked

## The README's test command.
test:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate the CRD from src/api.rs (CI fails when crds/ is stale).
crd:
	$(CARGO) run --quiet --locked -- crd > crds/iamidentitymappings.awsauth.dev.yaml

## Render the examples offline into an aws-auth ConfigMap.
render:
	$(CARGO) run --quiet --locked -- render examples/

bench:
	$(CARGO) bench --locked --bench core

docker:
	docker build -t $(IMAGE) .

ci:
	bash .ci/run

clean:
	$(CARGO) clean
