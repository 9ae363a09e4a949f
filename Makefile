# layerset-csi — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/layerset-csi
DEMO ?= $(CURDIR)/_output/demo

# The packages that run in the cluster's control plane, or are imported by what does, rather than on a
# node: they must build for any OS (lint-darwin checks it), so the node's Linux-only code stays out.
CLUSTER_PKGS := ./pkg/apis/... ./pkg/catalog/... ./pkg/compose/... ./pkg/controller/... ./pkg/provisioner/... \
	./pkg/source/... ./pkg/csi/controller/... ./pkg/csi/server/... ./pkg/csi/identity/... ./pkg/csi/names/... \
	./pkg/csi/rpc/... ./pkg/volumeid/... ./internal/kubescheme/... ./internal/record/... ./internal/atomicfile/...

LINT_STEPS := lint-gofmt lint-vet lint-mod-tidy lint-golangci lint-darwin

.PHONY: help build test fuzz bench lint $(LINT_STEPS) generate verify-generated demo demo-clean tools

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

build: ## build bin/layerset-csi
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/layerset-csi

test: lint verify-generated verify-deploy-manifests ## everything CI runs: lint, generated files, all tests (needs root for mounts), then every fuzz target for TEST_FUZZTIME
	bash hack/tools.sh envtest helm csi-sanity
	bash hack/test-packages.sh
	KUBEBUILDER_ASSETS=$$(bash hack/tools.sh --print-dir) PATH=$$(bash hack/tools.sh --print-dir):$$PATH \
		$(GO) test -count=1 -timeout 40m ./...
	FUZZTIME=$(TEST_FUZZTIME) GO=$(GO) bash hack/fuzz.sh

# How long each fuzz target runs: FUZZTIME in make fuzz; in make test TEST_FUZZTIME, 5s unless
# FUZZTIME is given on the command line (about 20 targets, one after the other: near two minutes
# on two cores).
FUZZTIME ?= 10s
TEST_FUZZTIME ?= $(if $(filter command line,$(origin FUZZTIME)),$(FUZZTIME),5s)

fuzz: ## every fuzz target (func FuzzXxx in *_test.go), one at a time, FUZZTIME (10s) each; stops at the first failure
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash hack/fuzz.sh

bench: ## benchmarks, reported as ratios against a baseline in the same run (root)
	$(GO) test -run '^$$' -bench . -benchtime 20x -timeout 60m ./pkg/overlay/ ./pkg/archive/ ./pkg/layers/
	$(GO) test -run '^$$' -bench . -benchtime 30x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench VolumeStats -benchtime 5x ./pkg/csi/node/

.PHONY: bench-cold
bench-cold: ## cold start of a ~2 GiB image from a loopback registry: ours vs containerd 2, skopeo+tar, disk and decompression limits (root; BENCH_RUNS, BENCH_SCALE)
	bash bench/cold/run.sh

lint: $(LINT_STEPS) ## gofmt, go vet, go mod tidy -diff, golangci-lint (.golangci.yml), GOOS=darwin build of CLUSTER_PKGS

lint-gofmt: ## lint step: gofmt -l finds nothing
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "lint-gofmt: gofmt needed:"; echo "$$out"; exit 1; fi

lint-vet: ## lint step: go vet ./...
	$(GO) vet ./...

lint-mod-tidy: ## lint step: go.mod and go.sum are tidy (go mod tidy -diff)
	@$(GO) mod tidy -diff || { echo "lint-mod-tidy: go.mod/go.sum are not tidy (run go mod tidy), or the module does not load"; exit 1; }

lint-golangci: ## lint step: golangci-lint with .golangci.yml (errcheck, staticcheck, revive exported)
	bash hack/tools.sh golangci-lint
	$$(bash hack/tools.sh --print-dir)/golangci-lint run ./...

lint-darwin: ## lint step: GOOS=darwin go build of CLUSTER_PKGS, the packages that must not need Linux
	GOOS=darwin CGO_ENABLED=0 $(GO) build $(CLUSTER_PKGS)

generate: ## deepcopy and CRD manifests from kubebuilder markers (controller-gen, pinned in go.mod)
	$(GO) tool controller-gen object paths=./pkg/apis/...
	$(GO) tool controller-gen crd paths=./pkg/apis/... output:crd:dir=config/crd
	$(GO) tool controller-gen rbac:roleName=layerset-controller paths="./pkg/controller/...;./pkg/provisioner/..." output:rbac:dir=config/rbac/controller
	$(GO) tool controller-gen rbac:roleName=layerset-node paths=./pkg/nodeagent/... output:rbac:dir=config/rbac/node
	bash hack/render-deploy.sh

verify-generated: generate ## fail when generated files are stale
	@git diff --exit-code -- pkg/apis config charts deploy || { echo "generated files are stale: run make generate and commit"; exit 1; }

demo: build ## standalone mode: compose the example LayerSet and mount it under _output/demo/mnt
	@bash hack/demo.sh up "$(DEMO)"

demo-clean: ## unmount the demo volume and remove _output/demo
	@bash hack/demo.sh down "$(DEMO)"

tools: ## build the Kubernetes test binaries, helm and csi-sanity into .cache/ (golangci-lint: make lint)
	bash hack/tools.sh

include hack/packaging.mk
include hack/e2e.mk
