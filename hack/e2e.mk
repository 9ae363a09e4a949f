# End-to-end targets: a real single-node Kubernetes cluster on this machine
# (see e2e/README.md). Included by the Makefile. They need root.

.PHONY: e2e cluster cluster-down

e2e: ## end-to-end suite on a throwaway single-node cluster, always torn down (E2E_RUN=regexp picks scenarios)
	bash e2e/run.sh

cluster: ## a local single-node cluster with layerset-csi installed; then: source .cache/e2e/cluster.env
	bash e2e/cluster/up.sh
	bash e2e/cluster/install-driver.sh
	@echo "cluster ready: source .cache/e2e/cluster.env && kubectl get pods -A; make cluster-down removes it"

cluster-down: ## remove the cluster of make cluster, leaving the host as it was
	bash e2e/cluster/down.sh
