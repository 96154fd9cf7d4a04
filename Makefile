# slugway: the two commands a user needs are `make run` and `make test`.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

K8S_VERSION ?= v1.37.2
BIN         := $(CURDIR)/bin
ASSETS      := $(BIN)/k8s-$(K8S_VERSION)
CONTROLLER_GEN := go tool controller-gen
# envtest and the e2e tests find kube-apiserver, etcd, kubectl and helm here.
export KUBEBUILDER_ASSETS ?= $(ASSETS)
GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook configurations from the markers in api/, controllers/ and webhooks/.
	$(CONTROLLER_GEN) rbac:roleName=slugway-controller crd webhook paths="./api/...;./controllers/...;./webhooks/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	@# The Helm chart ships copies of the generated files; hack/verify-generated.sh catches drift.
	mkdir -p charts/slugway/crds charts/slugway/files
	cp config/crd/bases/*.yaml charts/slugway/crds/
	cp config/rbac/role.yaml charts/slugway/files/controller-role.yaml
	cp config/rbac/service_role.yaml charts/slugway/files/service-role.yaml
	cp config/webhook/manifests.yaml charts/slugway/files/webhooks.yaml

.PHONY: generate
generate: ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet and staticcheck (the version pinned in go.mod's tool block).
	go vet ./...
	go tool staticcheck ./...

.PHONY: verify
verify: ## Fail if generated files are stale, code is not gofmt'ed, a binary is tracked, or the proxy or SDK links control-plane code. Regenerates nothing in the tree.
	hack/verify-generated.sh
	hack/verify-no-binaries.sh
	hack/verify-deps.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd, kubectl, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and helm into bin/ (skipped when present).
	hack/controlplane.sh >/dev/null

.PHONY: test
test: controlplane verify vet ## Run every test against a real kube-apiserver and etcd, the node suite where the machine allows it, then each fuzzer briefly.
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v '/test/node$$')
	$(MAKE) --no-print-directory test-node
	$(MAKE) --no-print-directory fuzz

.PHONY: test-node
test-node: controlplane ## Run only the node suite (test/node): slugway on a real single-node cluster (root; skips with the reason otherwise).
	go test $(GO_TEST_FLAGS) -v ./test/node/

FUZZTIME ?= 10s
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each, after its seed corpus.
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

##@ Build

.PHONY: build
build: ## Build bin/slugway.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/slugway .

.PHONY: run
run: ## Run the whole product locally: control plane, controller, proxy and the skeleton-svc and grpc-svc examples.
	hack/run.sh

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ More

.PHONY: test-helm
test-helm: controlplane ## Run only the packaging tests (Helm chart, kustomize, Dockerfile) against a real apiserver.
	go test $(GO_TEST_FLAGS) ./test/helm/...

.PHONY: e2e
e2e: controlplane build ## Run only the end-to-end tests (real binaries as processes).
	go test $(GO_TEST_FLAGS) ./test/e2e/...

.PHONY: bench-proxy
bench-proxy: controlplane build ## Compare the proxy with nginx, HAProxy and Caddy under wrk (installs them from Debian if missing).
	hack/bench-proxy.sh

.PHONY: bench-node
bench-node: controlplane ## The proxy in a pod vs nginx in a pod through kube-proxy's ClusterIPs, on a real node (root; brings it up and down).
	hack/bench-node.sh

IMAGE_TAG ?= dev
.PHONY: image
image: ## Build the slugway, example and pause images without Docker: docker archives in bin/images (IMAGE_TAG, default dev).
	go run ./hack/image -out $(BIN)/images -tag $(IMAGE_TAG)

.PHONY: cluster
cluster: controlplane ## A real local single-node cluster, no Docker or kind (root; installs containerd, runc and the CNI plugins from Debian). Stop it with `make cluster-down`.
	hack/node.sh up

.PHONY: cluster-down
cluster-down: ## Stop what `make cluster` started and restore the host.
	hack/node.sh down

IMG ?= slugway:dev
.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .
