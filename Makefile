# Named entry points; each is a thin call into uv / the starling CLI.
.DEFAULT_GOAL := help
UV_RUN := uv run --frozen

.PHONY: help setup tools test unit integration controlplane lint typecheck fmt docs dev-kafka dev-redis dev-airflow bench up down status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## install system packages, uv, the locked venv and the Kafka jars (minutes; no Go builds)
	bash scripts/setup.sh

tools: ## build every pinned Go tool and install checkov's venv now (cold ~21 min measured); the test tiers otherwise build on first use
	$(UV_RUN) starling tools build
	$(UV_RUN) python -m starling.toolchain.pytools

test: lint typecheck ## everything CI runs: lint, types, then all test tiers this machine can run
	$(UV_RUN) pytest

unit: ## fast tests with no servers
	$(UV_RUN) pytest -m unit

integration: ## tests against a real Kafka broker and Redis
	$(UV_RUN) pytest -m integration

lint: ## ruff lint and format check
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .

typecheck: ## mypy --strict on our packages
	$(UV_RUN) mypy

fmt: ## apply ruff's fixes and formatting
	$(UV_RUN) ruff check --fix .
	$(UV_RUN) ruff format .

docs: ## regenerate docs/topics.md from the topic catalog
	$(UV_RUN) starling topics --markdown > docs/topics.md

dev-kafka: ## a local Kafka broker in the foreground (Ctrl-C stops it)
	$(UV_RUN) starling dev kafka

dev-redis: ## a local Redis in the foreground
	$(UV_RUN) starling dev redis

dev-airflow: ## Airflow with the repo's DAGs (BOOTSTRAP=host:port REDIS=redis://host:port/0)
	@test -n "$(BOOTSTRAP)" -a -n "$(REDIS)" || { echo "usage: make dev-airflow" \
		"BOOTSTRAP=<PLAINTEXT bootstrap of make dev-kafka> REDIS=<URL of make dev-redis>"; exit 2; }
	$(UV_RUN) starling dev airflow --bootstrap "$(BOOTSTRAP)" --redis "$(REDIS)"

up: ## the whole pipeline on this machine until Ctrl-C (ARGS="--no-airflow --rate 50 ...")
	$(UV_RUN) starling up $(ARGS)

down: ## stop what `make up` runs (from another terminal)
	$(UV_RUN) starling down $(ARGS)

status: ## one table of the local stack's health; fails if anything is unhealthy
	$(UV_RUN) starling status $(ARGS)

bench: ## loadgen vs raw producer, and schema decode throughput
	$(UV_RUN) python bench/loadgen_bench.py

controlplane: ## pulumi preview/up/destroy of the ci stack on a real etcd + kube-apiserver
	$(UV_RUN) pytest -m controlplane
