# DubeBox: the targets a newcomer guesses. `make help` lists them.
SHELL := bash
GO ?= go
# go.mod asks for Go 1.26.11, which fixes the standard library's known
# vulnerabilities; where an older Go 1.26 is installed, the go command
# fetches that toolchain from the module proxy (Go's default, which some
# installations turn off).
export GOTOOLCHAIN ?= auto
# Compose v2 (docker compose) where it is installed, else Compose 1.29.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(shell $(GO) env GOPATH)/bin/golangci-lint
FUZZTIME ?= 10s
# CORPUS is where make contract keeps the requests it replays.
CORPUS ?= $(CURDIR)/.ci/contract/corpus.jsonl
# make load runs this long; 0 runs until interrupted.
LOAD_DURATION ?= 60s
# Gin without MessagePack, which the API never uses (as the Dockerfile builds).
BUILD_TAGS := nomsgpack

.PHONY: help build run load test deploy-test swagger-ui e2e compose-test screenshot faults bench bench-smoke fuzz lint tools up down clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## build ./dubebox and ./loadgen
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o . ./cmd/dubebox ./cmd/loadgen

run: build ## run against the Redis at REDIS_ADDR (default localhost:6379)
	LOG_FORMAT=$${LOG_FORMAT:-console} ./dubebox

load: build ## drive mixed traffic at the API on localhost:5000 for LOAD_DURATION (default 60s; LOAD_ARGS for more flags)
	./loadgen -url $${URL:-http://localhost:5000} -duration $(LOAD_DURATION) $(LOAD_ARGS)

test: ## unit and integration tests (real redis-server) with the race detector, and deploy-test
	$(GO) test -race -count=1 ./...
	cd deploy && $(GO) test -count=1 ./...

deploy-test: ## check the ECS template and the Helm chart (deploy/) against the service
	cd deploy && $(GO) test -count=1 -v ./...

swagger-ui: ## copy Swagger UI's files for /docs from the npm package pinned in internal/api/swaggerui (needs npm)
	cd internal/api/swaggerui && npm ci --ignore-scripts --no-audit --no-fund && \
		cp node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css,LICENSE,NOTICE,swagger-ui-bundle.js.LICENSE.txt} www/

e2e: ## the Compose stack proven with local processes (needs prometheus, prometheus-redis-exporter, docker-compose)
	$(GO) test -tags e2e -count=1 -v ./internal/e2e

contract: ## replay the route and hostile-input tests' requests through Prism's validating proxy, which must find no violation (needs node 20 and npm; installs Prism in .ci/contract)
	npm ci --prefix .ci/contract --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -f $(CORPUS)
	DUBEBOX_CONTRACT_CORPUS=$(CORPUS) $(GO) test -count=1 ./internal/api
	DUBEBOX_CONTRACT_CORPUS=$(CORPUS) $(GO) test -tags contract -count=1 -v -timeout 20m ./internal/contract

compose-test: ## docker compose up for real, checked and torn down (starts a private dockerd when none runs; needs root, docker.io, docker-compose, debootstrap)
	$(GO) test -tags compose -count=1 -v -timeout 40m -run '^TestCompose$$' ./internal/e2e

screenshot: ## the README's pictures in docs/: four dashboard panels drawn from their queries under make e2e's load, and the /docs page (needs prometheus, prometheus-redis-exporter, chromium)
	DUBEBOX_PICTURES=$(CURDIR)/docs $(GO) test -tags e2e -count=1 -v -run '^TestStack$$/^single$$' ./internal/e2e

faults: ## fault tests (Redis stalled, killed, full; Cluster and Sentinel failover, resharding; pool flood; shutdown; slow clients; event streams through failovers and SIGTERM) and the hostile-input suite
	$(GO) test -tags faults -count=1 -v ./internal/faults
	$(GO) test -count=1 -v -run '^(TestHostileInput|TestReadToken|TestRateLimit|TestTokenGuessingIsSlowed|TestCardinalityIsBounded|TestSecretsNeverLeak|TestNamespaceIsolation|TestRedisAuth)$$' ./internal/api ./cmd/dubebox

bench: ## benchmark against redis-benchmark, baselines and Webdis, appends to bench/results.md (needs wrk, redis-benchmark, webdis)
	$(GO) test -tags bench -count=1 -v -timeout 30m -run TestBench ./bench
	$(GO) test -run '^$$' -bench . -benchmem ./internal/api

bench-smoke: ## every step of the benchmark, briefly, with the report in a temporary file (CI)
	BENCH_SMOKE=1 $(GO) test -tags bench -count=1 -v -run TestBench ./bench
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/api

fuzz: ## run each fuzz target for FUZZTIME (default 10s); crashers land in testdata/fuzz
	$(GO) test -run '^$$' -fuzz '^FuzzKeyFieldTTL$$' -fuzztime $(FUZZTIME) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzRouter$$' -fuzztime $(FUZZTIME) ./internal/api

vulncheck: ## govulncheck on both modules, the Go vulnerability database fetched through the module proxy (fails on a vulnerability the code reaches)
	GO=$(GO) .ci/vulncheck

lint: tools ## gofmt, go vet and golangci-lint (config in .golangci.yml)
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt: run gofmt -w on the files above'; exit 1; }
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	cd deploy && $(GO) vet ./... && $(GOLANGCI_LINT) run ./...

tools: ## install golangci-lint when missing
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q '$(patsubst v%,%,$(GOLANGCI_LINT_VERSION))' || \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

up: ## the whole stack in Docker (needs a Docker engine); writes .env with a generated API_TOKEN and REDIS_PASSWORD the first time
	@test -f .env || { umask 077; printf 'API_TOKEN=%s\nREDIS_PASSWORD=%s\n' "$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" "$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > .env; \
		echo 'wrote .env: your API_TOKEN is in it (set -a; . ./.env; set +a; curl -H "Authorization: Bearer $$API_TOKEN" ...)'; }
	$(COMPOSE) up --build

down: ## stop the stack
	$(COMPOSE) down

clean: ## remove built binaries
	rm -f dubebox loadgen
