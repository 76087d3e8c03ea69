# payrail: the one way to build, run, test, benchmark and lint. `make` lists the targets.
# Targets are documented by their `## ` comment; `make help` prints them.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PKG       ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 20m
# Environment of the services (same discovery as make up / make test).
SERVICES_ENV = eval "$$(scripts/services.sh env)"

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target>\n\n"} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2} \
	  /^##@ / {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

##@ Run

.PHONY: up
up: ## Run everything locally: PostgreSQL, Redis, migrations, api, worker, mockpg, demoshop
	@scripts/up.sh

.PHONY: down
down: ## Stop exactly what make up (or make test) started
	@scripts/down.sh

.PHONY: status
status: ## Show whether PostgreSQL and Redis answer and which ones this repo started
	@scripts/services.sh status

.PHONY: logs
logs: ## Follow the logs of the processes make up started
	@ls .run/logs/*.log >/dev/null 2>&1 || { echo "no logs yet (make up)"; exit 1; }
	tail -n 50 -F .run/logs/*.log

.PHONY: migrate
migrate: ## Apply database migrations (payrailctl migrate up)
	@scripts/services.sh up
	@$(SERVICES_ENV); go run ./cmd/payrailctl migrate up

.PHONY: psql
psql: ## Open psql on PAYRAIL_DATABASE_URL (password in PGPASSWORD, not on the command line)
	@exec scripts/services.sh psql

.PHONY: redis-cli
redis-cli: ## Open redis-cli on PAYRAIL_REDIS_URL (password in REDISCLI_AUTH, not on the command line)
	@exec scripts/services.sh redis-cli

##@ Test

.PHONY: test
test: ## Run all tests with -race against real PostgreSQL and Redis (PKG=, TESTFLAGS=)
	@PKG='$(PKG)' TESTFLAGS='$(TESTFLAGS)' scripts/test.sh

.PHONY: test-examples
test-examples: ## Build the Next.js example and pay through it in chromium against a real payrail (examples/nextjs-checkout)
	@PKG=./examples/... TESTFLAGS='-tags examples -count=1 -v -timeout 15m' scripts/test.sh

.PHONY: test-short
test-short: ## Quick tests: -short, no race detector
	@PKG='$(PKG)' TESTFLAGS='-short -count=1 -timeout 5m' scripts/test.sh

.PHONY: bench
bench: ## Load test what make up runs (starting it if nothing answers) with cmd/loadgen (ARGS=-quick, see docs/bench.md)
	@if ! { [ -f .run/env ] && curl -fsS -o /dev/null --max-time 2 "$$(sed -n 's/^PAYRAIL_API_URL=//p' .run/env)/readyz"; }; then scripts/up.sh; fi
	go run ./cmd/loadgen $(ARGS)

.PHONY: chaos
chaos: ## Run the full chaos suite (build tag chaos, ./chaos; docs/chaos.md): real api/worker processes under faults
	@PKG=./chaos/... TESTFLAGS='-tags chaos -count=1 -v -timeout 60m' scripts/test.sh

##@ Build

.PHONY: build
build: ## Build every binary into bin/
	@mkdir -p bin
	go build -o bin/ ./cmd/...

.PHONY: lint
lint: ## gofmt (must list nothing) and go vet
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	go vet ./...

.PHONY: fmt
fmt: ## Format all Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## Remove build output and logs (keeps .run/env secrets and data)
	rm -rf bin/ .run/bin/ .run/logs/

.PHONY: reset
reset: down ## Stop everything and delete .run/ entirely (data, secrets, logs)
	rm -rf .run/
