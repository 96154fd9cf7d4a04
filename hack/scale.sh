#!/usr/bin/env bash
# hack/scale.sh: slugway's control plane at scale (issue 7), on this machine, loopback only.
#
#   hack/scale.sh                 # 1, 100, 1,000 and 10,000 instances, then the zero-write run and the plot
#   hack/scale.sh 100 1000        # only these sizes (no zero-write run unless ZERO=1)
#
# Each size starts its own kube-apiserver and etcd (with the admission webhooks), the real
# `slugway controller` and `slugway proxy` binaries, and origin servers on 40 loopback ports;
# it creates the instances (10 per slug) and measures; see docs/scale.md for what and how.
# Results: docs/scale-data/*.json (OUT=...), the figure: docs/scale.png. The 10,000 run takes
# about 10 minutes on 2 cores and is bounded by -timeout 15m; it is not part of `make test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-docs/scale-data}"
work="${WORKDIR:-$(mktemp -d -t slugway-scale-XXXXXX)}"
mkdir -p "$out" "$work"

echo "==> building the control plane if needed, slugway and the scale harness"
hack/controlplane.sh >/dev/null
CGO_ENABLED=0 go build -o bin/slugway .
go build -o bin/slugway-scale ./hack/scale

sizes=("$@")
zero="${ZERO:-}"
if [ ${#sizes[@]} -eq 0 ]; then
	sizes=(1 100 1000 10000)
	zero=1
fi
for n in "${sizes[@]}"; do
	echo "==> $n instances, --heartbeat-refresh 30s (the default)"
	bin/slugway-scale -bin bin/slugway -instances "$n" -timeout 15m \
		-workdir "$work/$n" -out "$out/instances-$n-refresh-30s.json" >"$work/$n.out"
	sed -n '/^<!--/,$p' "$work/$n.out"
done
if [ -n "$zero" ]; then
	# Nothing changes but the heartbeat refresh, and that is an hour away: the steady state must write nothing.
	echo "==> 1000 instances, --heartbeat-refresh 1h (the zero-write check)"
	bin/slugway-scale -bin bin/slugway -instances 1000 -heartbeat-refresh 1h -flips 0 -timeout 10m \
		-workdir "$work/1000-1h" -out "$out/instances-1000-refresh-1h.json" >"$work/1000-1h.out"
	sed -n '/^<!--/,$p' "$work/1000-1h.out"
fi

echo "==> plotting docs/scale.png"
go run ./hack/plot -o docs/scale.png "$out"/*.json
for p in "$work"/*/proxy-churn-*.pprof; do
	[ -s "$p" ] || continue
	echo "==> proxy CPU profile under heartbeat churn: $p"
	go tool pprof -top -nodecount=30 bin/slugway "$p" 2>/dev/null | sed -n '1,40p'
done
echo "==> logs and profiles are in $work"
