# layerset-csi — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/layerset-csi
DEMO ?= $(CURDIR)/_output/demo

.PHONY: help build test test-unit test-envtest bench lint generate verify-generated demo demo-clean tools

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

build: ## build bin/layerset-csi
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/layerset-csi

test: lint verify-generated verify-deploy-manifests ## everything CI runs: lint, generated files, all tests (needs root for mounts)
	bash hack/tools.sh envtest helm csi-sanity
	KUBEBUILDER_ASSETS=$$(bash hack/tools.sh --print-dir) PATH=$$(bash hack/tools.sh --print-dir):$$PATH \
		$(GO) test -count=1 -timeout 40m ./...

bench: ## benchmarks, reported as ratios against a baseline in the same run (root)
	$(GO) test -run '^$$' -bench . -benchtime 20x -timeout 60m ./pkg/overlay/ ./pkg/archive/ ./pkg/layers/
	$(GO) test -run '^$$' -bench . -benchtime 30x -timeout 60m ./bench/

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

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

tools: ## build the Kubernetes test binaries, helm and csi-sanity into .cache/
	bash hack/tools.sh

include hack/packaging.mk
include hack/e2e.mk
