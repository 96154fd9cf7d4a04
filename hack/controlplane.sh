#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, etcd, kubectl, kube-controller-manager),
# the node's binaries (kubelet, kube-scheduler, kube-proxy; hack/node.sh runs them), helm
# and grpcurl (make run's walkthrough and test/run use it) from the Go module proxy into
# bin/, so tests run against the real thing.
#
# The kubernetes module replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...)
# with local paths, so `go install k8s.io/kubernetes/cmd/...@vX` does not work. Instead we
# build from a scratch module that requires k8s.io/kubernetes and replaces every staging
# module with its published v0.X.Y tag. The list of staging modules is read from the
# kubernetes .mod file that the Go toolchain itself downloads.
#
# Re-running is cheap: a binary that is already built for the pinned version is skipped.
# When the list of binaries changes, the scratch module's tools.go changes with it and the
# module is tidied again (the kubelet and kube-proxy need modules the apiserver does not).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
GRPCURL_VERSION="${GRPCURL_VERSION:-v1.9.4}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${CONTROLPLANE_DIR:-$root/bin/k8s-$K8S_VERSION}"
work="$root/bin/.build"
mkdir -p "$out" "$work"

log() { printf '[controlplane] %s\n' "$*" >&2; }

k8s_bins=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
need_k8s=()
for b in "${k8s_bins[@]}" etcd; do
  [ -x "$out/$b" ] || need_k8s+=("$b")
done

if [ ${#need_k8s[@]} -gt 0 ]; then
  staging_minor="${K8S_VERSION#v1.}"          # 37.2
  staging_version="v0.${staging_minor}"       # v0.37.2
  mod_dir="$work/k8s-$K8S_VERSION"
  mkdir -p "$mod_dir"
  cd "$mod_dir"

  if [ ! -f go.sum ] || [ ! -f .ready ]; then
    log "resolving k8s.io/kubernetes@$K8S_VERSION (staging modules at $staging_version)"
    rm -f go.mod go.sum
    go mod init slugway.local/controlplane >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [ -f "$gomod" ] || { log "could not locate the kubernetes .mod file"; exit 1; }
    # Every staging module appears in kubernetes' go.mod as a requirement at v0.0.0.
    mapfile -t staging < <(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" | sort -u)
    [ ${#staging[@]} -gt 0 ] || { log "no staging modules found in $gomod"; exit 1; }
    log "replacing ${#staging[@]} staging modules"
    args=(-require "k8s.io/kubernetes@$K8S_VERSION" -require "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
    for m in "${staging[@]}"; do
      args+=(-replace "$m=$m@$staging_version")
    done
    go mod edit "${args[@]}"
    rm -f tools.go
  fi

  # tools.go imports every command we build, so that `go mod tidy` resolves what they need.
  tools="$(printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "go.etcd.io/etcd/server/v3"\n'
    for b in $(printf '%s\n' "${k8s_bins[@]}" | sort); do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
    printf ')\n')"
  if [ ! -f .ready ] || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
    log "tidying the scratch module for: ${k8s_bins[*]} etcd"
    rm -f .ready
    printf '%s\n' "$tools" > tools.go
    go mod tidy
    touch .ready
  fi

  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for b in "${need_k8s[@]}"; do
    case "$b" in
      etcd) pkg="go.etcd.io/etcd/server/v3"; flags="-s -w" ;;
      *)    pkg="k8s.io/kubernetes/cmd/$b"; flags="$ldflags" ;;
    esac
    log "building $b (first build takes minutes)"
    start=$(date +%s)
    CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$out/$b.tmp" "$pkg"
    mv "$out/$b.tmp" "$out/$b"
    log "built $b in $(( $(date +%s) - start ))s"
  done
fi

if [ ! -x "$out/helm" ]; then
  log "building helm $HELM_VERSION"
  start=$(date +%s)
  # Stamp the version and the Kubernetes version helm assumes when no cluster is
  # connected (helm template/lint), as helm's own Makefile does from its k8s.io modules.
  helm_mod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  helm_k8s_minor="$(awk '$1 == "k8s.io/client-go" {print $2}' "$helm_mod" | cut -d. -f2)"
  hflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    hflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${helm_k8s_minor:-37}"
  done
  GOBIN="$out" CGO_ENABLED=0 go install -trimpath -ldflags "$hflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "built helm in $(( $(date +%s) - start ))s"
fi

if [ ! -x "$out/grpcurl" ]; then
  log "building grpcurl $GRPCURL_VERSION"
  start=$(date +%s)
  GOBIN="$out" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.version=$GRPCURL_VERSION" "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  log "built grpcurl in $(( $(date +%s) - start ))s"
fi

echo "$out"
