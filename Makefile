# pod-identity-webhook. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

GO        ?= go
BIN       := bin/pod-identity-webhook
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
LDFLAGS   := -s -w -X github.com/pod-identity-webhook/pod-identity-webhook/cli.Version=$(VERSION)
# Every package but the end-to-end suite, which `make e2e` runs against a real API server.
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v /test/e2e)
FUZZTIME  ?= 30s
BENCHTIME ?= 1s

.PHONY: help build run test vet unit race policy-test deploy-check e2e bench fuzz image fmt clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build bin/pod-identity-webhook
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pod-identity-webhook

run: build ## Evaluate the sample pod with the embedded default bundle and print the mutated pod
	$(BIN) eval --pod samples/pod.yaml --service-account samples/serviceaccount.yaml --aws-default-region us-west-2

test: vet unit race policy-test deploy-check ## go vet, unit and conformance tests, fuzz seeds, race detector, Rego tests, deploy manifests

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 $(UNIT_PKGS)

# The packages where admissions run concurrently on shared state (pooled IR machines,
# caches, buffers), under the race detector.
RACE_PKGS = ./irvm/ ./engine/ ./admission/ ./webhook/ ./test/bench/
race:
	$(GO) test -race -count=1 $(RACE_PKGS)

policy-test: build ## Rego unit tests of the default bundle and the examples
	$(BIN) opa test -v policies/ examples/ | tail -n 3

deploy-check: ## Render and check the kustomize base and the Helm chart
	@if [ -x deploy/validate.sh ]; then deploy/validate.sh; else echo "deploy/validate.sh not present yet"; fi

e2e: build ## End-to-end tests on a real kube-apiserver and etcd (built once, then cached)
	KUBEBINS_DIR="$$(test/kubebins/build.sh)" WEBHOOK_BIN="$(CURDIR)/$(BIN)" \
		$(GO) test -count=1 -timeout 30m -v ./test/e2e/ 2>&1 | tee /tmp/pod-identity-webhook-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' || (tail -n 80 /tmp/pod-identity-webhook-e2e.log; exit 1)

BENCHCOUNT ?= 5
bench: ## Benchmarks on one core (GC charged to each op): handler vs plain-Go reference, interleaved BENCHCOUNT rounds, then the engine
	BENCHCOUNT=$(BENCHCOUNT) BENCHTIME=$(BENCHTIME) GO=$(GO) test/bench/ratios.sh
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -benchtime $(BENCHTIME) ./engine/ ./irvm/
	$(GO) test -run '^$$' -bench ServiceAccountCacheMemory -benchtime 1x ./sources/

# Every fuzz target, as package:Target. `go test` runs their seeds (and the crashers
# kept under testdata/fuzz/) as ordinary tests; `make fuzz` fuzzes each in turn.
FUZZ_TARGETS := \
	./admission/:FuzzAdmissionReview \
	./admission/:FuzzAnnotations \
	./admission/:FuzzDecodeReview \
	./engine/:FuzzLoadBundle \
	./engine/:FuzzObjectFields \
	./engine/:FuzzSplit \
	./engine/:FuzzShallowDecoders \
	./engine/:FuzzReadPodRef \
	./engine/:FuzzEvaluatorsAgree \
	./irvm/:FuzzMachineAgreesWithTopdown \
	./sources/:FuzzParseRoleMappings \
	./sources/:FuzzParseIdentities \
	./builtins/:FuzzParseBool \
	./builtins/:FuzzParseInt \
	./builtins/:FuzzCSVRecord

fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each; a crasher is written to testdata/fuzz/<Target>/
	@failed=""; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

image: ## Build the container image (needs a Docker engine; none runs on the CI machine)
	docker build --build-arg VERSION=$(VERSION) -t pod-identity-webhook:$(VERSION) .

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(GO) run ./cmd/pod-identity-webhook opa fmt -w policies examples

clean:
	rm -rf bin
