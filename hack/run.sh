#!/usr/bin/env bash
# make run: build what is missing (the control plane takes minutes the first time,
# with progress shown), then hand over to hack/run, which starts and supervises everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "==> building the local control plane if needed (first time: ~10 minutes on 2 cores)"
hack/controlplane.sh >/dev/null
echo "==> building slugway, skeleton-svc, grpc-svc and the runner"
CGO_ENABLED=0 go build -o bin/slugway .
go build -o bin/skeleton-svc ./examples/skeleton-svc
go build -o bin/grpc-svc ./examples/grpc-svc
go build -o bin/slugway-run ./hack/run
exec bin/slugway-run "$@"
