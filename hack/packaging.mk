# Packaging targets: the container image, the Helm chart and the plain manifests in deploy/.
# Included by the Makefile.

PLATFORMS ?= linux/$(shell $(GO) env GOARCH)

.PHONY: image deploy-manifests verify-deploy-manifests test-packaging

image: ## container image of this machine's platform (it ships the host's mkfs.ext4) as a docker-archive and an OCI layout in _output/image; other platforms: docker buildx build --platform linux/arm64 . (Dockerfile)
	PLATFORMS="$(PLATFORMS)" bash hack/image.sh

deploy-manifests: ## copy config/crd into the chart and render deploy/ from it (run after make generate)
	bash hack/render-deploy.sh

verify-deploy-manifests: ## fail when the chart's CRDs or deploy/ are stale
	bash hack/render-deploy.sh --check

test-packaging: ## helm lint/template matrix, then install, upgrade, uninstall and kubectl apply against a real kube-apiserver
	bash hack/tools.sh helm envtest
	$(GO) test -count=1 -timeout 20m ./hack/image/ ./test/packaging/
