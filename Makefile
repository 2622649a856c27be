# Switchboard build, test and verification.
#
# make build             build every binary into _output/bin
# make test              verify, unit, integration and end-to-end tests (what CI runs)
# make test-unit         unit tests, with the race detector
# make test-integration  the server run in-process against embedded etcd
# make test-e2e          real hub, members and switchboard on loopback (hack/test-e2e.sh)
# make local-up          start that topology and leave it running; make local-down stops it
# make bench             switchboard's proxy against direct access to a member (hack/bench.sh)
# make verify            generated code, formatting, vet, go.mod tidiness, golangci-lint and shellcheck
# make update-codegen    regenerate deepcopy, conversion, defaults, OpenAPI and clients

SHELL := /usr/bin/env bash -o errexit -o nounset -o pipefail
.DEFAULT_GOAL := build

MODULE      := github.com/switchboard-io/switchboard
OUTPUT_DIR  := _output
BIN_DIR     := $(OUTPUT_DIR)/bin
GO          ?= go
GOFLAGS     ?=
GOOS        ?= $(shell $(GO) env GOOS)
GOARCH      ?= $(shell $(GO) env GOARCH)

# Version information, injected with -ldflags. The build date is the commit
# date, so the same commit always builds the same binary.
GIT_VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
GIT_COMMIT     ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
GIT_TREE_STATE ?= $(shell if git diff --quiet HEAD 2>/dev/null; then echo clean; else echo dirty; fi)
BUILD_DATE     ?= $(shell date -u -d @$$(git log -1 --format=%ct 2>/dev/null || echo 0) +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w \
	-X $(MODULE)/pkg/version.gitVersion=$(GIT_VERSION) \
	-X $(MODULE)/pkg/version.gitCommit=$(GIT_COMMIT) \
	-X $(MODULE)/pkg/version.gitTreeState=$(GIT_TREE_STATE) \
	-X $(MODULE)/pkg/version.buildDate=$(BUILD_DATE)

BINARIES := switchboard-apiserver switchboard-agent kubectl-switchboard
# The image kubectl switchboard install runs by default: pkg/install's
# ImageRepository, tagged with the version the binaries report.
IMAGE    ?= ghcr.io/switchboard-io/switchboard-apiserver:$(GIT_VERSION)

.PHONY: build
build: $(addprefix $(BIN_DIR)/,$(BINARIES)) $(BIN_DIR)/kubectl_complete-switchboard

# Always rebuilt; go's build cache makes that cheap.
.PHONY: $(addprefix $(BIN_DIR)/,$(BINARIES))
$(addprefix $(BIN_DIR)/,$(BINARIES)): $(BIN_DIR)/%:
	CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) $(GO) build $(GOFLAGS) -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/$*

# kubectl (1.26+) completes "kubectl switchboard ..." by running
# kubectl_complete-switchboard from the PATH; kubectl-switchboard started by
# that name does it. A symbolic link follows every rebuild (go build replaces
# the file, which would leave a hard link on the old binary); copy it where
# links do not work: the program goes by its name, not by what it points at.
.PHONY: $(BIN_DIR)/kubectl_complete-switchboard
$(BIN_DIR)/kubectl_complete-switchboard: $(BIN_DIR)/kubectl-switchboard
	ln -sf kubectl-switchboard $@

.PHONY: test
test: verify test-unit test-fuzz test-integration test-e2e

.PHONY: test-unit
test-unit:
	$(GO) test $(GOFLAGS) -race -count=1 ./artifacts/... ./cmd/... ./pkg/... ./test/bench/... ./test/topology/...

.PHONY: test-fuzz
test-fuzz:
	GO=$(GO) hack/fuzz.sh 10s

# Every fuzz target for longer: make fuzz FUZZTIME=30m.
FUZZTIME ?= 2m
.PHONY: fuzz
fuzz:
	GO=$(GO) hack/fuzz.sh $(FUZZTIME)

.PHONY: test-integration
test-integration:
	$(GO) test $(GOFLAGS) -race -count=1 -timeout 20m ./test/integration/...

.PHONY: test-e2e
test-e2e:
	hack/test-e2e.sh

# make soak DURATION=30m: mixed load through the hub on both members,
# with faults along the way (test/e2e TestSoak; make test-e2e runs 3 min).
DURATION ?= 30m
.PHONY: soak
soak:
	SOAK_DURATION=$(DURATION) hack/test-e2e.sh -run 'TestSoak$$' -v -timeout 3h

.PHONY: bench
bench:
	hack/bench.sh $(BENCH_FLAGS)

.PHONY: verify
verify: verify-gofmt verify-vet verify-gomod verify-codegen verify-lint verify-shellcheck

.PHONY: verify-gofmt
verify-gofmt:
	@out="$$(gofmt -s -l cmd pkg test)"; \
	if [[ -n "$$out" ]]; then echo "These files need gofmt -s -w:"; echo "$$out"; exit 1; fi

.PHONY: verify-vet
verify-vet:
	$(GO) vet ./...

.PHONY: verify-gomod
verify-gomod:
	@cp go.mod $(OUTPUT_DIR)/go.mod.orig 2>/dev/null || { mkdir -p $(OUTPUT_DIR); cp go.mod $(OUTPUT_DIR)/go.mod.orig; }
	@cp go.sum $(OUTPUT_DIR)/go.sum.orig
	@$(GO) mod tidy
	@status=0; diff -u $(OUTPUT_DIR)/go.mod.orig go.mod || status=1; diff -u $(OUTPUT_DIR)/go.sum.orig go.sum || status=1; \
	cp $(OUTPUT_DIR)/go.mod.orig go.mod; cp $(OUTPUT_DIR)/go.sum.orig go.sum; \
	if [[ $$status -ne 0 ]]; then echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; fi

.PHONY: verify-codegen
verify-codegen:
	hack/verify-codegen.sh

.PHONY: verify-lint
verify-lint:
	hack/verify-golangci-lint.sh

.PHONY: verify-shellcheck
verify-shellcheck:
	hack/verify-shellcheck.sh

.PHONY: update-codegen
update-codegen:
	hack/update-codegen.sh

.PHONY: update
update: update-codegen
	gofmt -s -w cmd pkg test
	$(GO) mod tidy

# No Docker engine is needed to build the binary; this target is for machines that have one.
.PHONY: image
image:
	docker build --build-arg GIT_VERSION=$(GIT_VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) \
		--build-arg BUILD_DATE=$(BUILD_DATE) -t $(IMAGE) .

.PHONY: local-up
local-up:
	hack/local-up.sh

.PHONY: local-down
local-down:
	hack/local-down.sh

.PHONY: clean
clean:
	rm -rf $(OUTPUT_DIR)
