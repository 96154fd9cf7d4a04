#!/usr/bin/env bash
# Reproduces docs/security.md's hostile-input table: the raw-bytes cases of
# internal/hostile sent through nginx and HAProxy at their default proxy
# settings (Debian packages nginx and haproxy, started on loopback ports
# picked at random and stopped afterwards), then through slugway (both of its
# HTTP/1.1 servers, with a real apiserver: the integration test, which logs
# one line per case and fails if slugway does not do what the table says).
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in nginx haproxy; do
  command -v "$bin" >/dev/null || { echo "$bin is missing: apt-get install -y nginx haproxy" >&2; exit 1; }
done
echo "== nginx and HAProxy"
go run ./hack/hostilecmp "$@"
echo
echo "== slugway (fast front end and net/http)"
KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$PWD/bin/k8s-v1.37.2}" \
  go test -count=1 -run 'TestHostileInput' -v ./proxy/integration | grep -E '^\s+hostile_test.go:[0-9]+: \|' || true
