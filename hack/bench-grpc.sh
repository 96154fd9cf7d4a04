#!/usr/bin/env bash
# The gRPC row of docs/benchmarks.md: unary calls of examples/grpc-svc's
# grpc.testing.TestService/UnaryCall (64-byte payloads each way) over h2c, with a
# grpc-go load loop (hack/grpcbench), in one run against:
#   direct  (client → instance)
#   slugway (client → proxy, routed by host name grpc-bench.bench.test, → instance over h2c)
#   nginx   (client → nginx grpc_pass over h2c → instance), the reference, if nginx is installed
# slugway's route comes from a real local kube-apiserver + etcd (grpcbench env).
# CPU seconds per 100k calls are read from /proc/<pid>/stat of the proxy processes over
# warm-up and measured time, divided by calls/s times that time (an estimate).
#
#   hack/bench-grpc.sh                       # 10s per target, 64 calls in flight on 4 connections
#   DURATION=5s CONCURRENCY=16 hack/bench-grpc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s} WARMUP=${WARMUP:-2s} CONCURRENCY=${CONCURRENCY:-64} CONNS=${CONNS:-4} SIZE=${SIZE:-64}
ORIGIN=127.0.0.1:28091 SLUGWAY=127.0.0.1:28092 ADMIN=127.0.0.1:29092 NGINX=127.0.0.1:28093
CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/slugway-grpcbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "building slugway and grpcbench" >&2
go build -o "$WORK/slugway" .
go build -o "$WORK/grpcbench" ./hack/grpcbench

wait_line() { # file: wait until it says ready
  for _ in $(seq 1 600); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; exit 1
}
cpu() { # pids...: their utime+stime in clock ticks
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

"$WORK/grpcbench" serve -listen "$ORIGIN" > "$WORK/serve.out" & PIDS+=($!)
wait_line "$WORK/serve.out"
"$WORK/grpcbench" env -origin "http://$ORIGIN" -write-kubeconfig "$WORK/kubeconfig" > "$WORK/env.out" 2>"$WORK/env.log" & PIDS+=($!)
wait_line "$WORK/env.out"
KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway" proxy --listen "$SLUGWAY" --admin-listen "$ADMIN" --allow-loopback \
  --host-domains bench.test 2>"$WORK/slugway.log" & PIDS+=($!); SLUGWAY_PID=$!
for _ in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/readyz" || true)" = 200 ] && break; sleep 0.1; done

NGINX_PIDS=()
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
if [ -x "$NGINX_BIN" ]; then
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  upstream grpc_origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX http2;
    location / { grpc_pass grpc://grpc_origin; }
  }
}
CONF
  "$NGINX_BIN" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' 2>"$WORK/nginx/stderr" & PIDS+=($!)
  sleep 1
  NGINX_PIDS=($(pgrep -P "$!" || true) "$!")
fi

run() { # name target authority pids...
  local name=$1 target=$2 authority=$3; shift 3
  local before after
  before=$(cpu "$@" 2>/dev/null || echo 0)
  line=$("$WORK/grpcbench" load -name "$name" -target "$target" -authority "$authority" -conns "$CONNS" \
    -concurrency "$CONCURRENCY" -size "$SIZE" -duration "$DURATION" -warmup "$WARMUP")
  after=$(cpu "$@" 2>/dev/null || echo 0)
  echo "$line $(( after - before ))"
}
secs=${DURATION%s}
{
  run direct "$ORIGIN" ""
  run slugway "$SLUGWAY" grpc-bench.bench.test "$SLUGWAY_PID"
  [ ${#NGINX_PIDS[@]} -gt 0 ] && run nginx "$NGINX" "" "${NGINX_PIDS[@]}"
} | awk -v tck="$CLK_TCK" -v secs="$secs" -v warm="${WARMUP%s}" '
  { name[NR]=$1; rps[NR]=$2; p50[NR]=$3; p99[NR]=$4; errs[NR]=$5; ticks[NR]=$6; if ($1=="nginx") n=NR }
  END {
    printf "| target  | calls/s | p50 ms | p99 ms | errors | CPU s/100k | calls/s÷nginx | p99÷nginx | CPU÷nginx |\n"
    printf "|---------|--------:|-------:|-------:|-------:|-----------:|--------------:|----------:|----------:|\n"
    for (i = 1; i <= NR; i++) {
      calls = rps[i] * (secs + warm)   # CPU is read over warm-up + measured time
      cpu = (ticks[i] > 0) ? sprintf("%.2f", ticks[i] / tck / calls * 100000) : "-"
      r = n ? sprintf("%.2f", rps[i] / rps[n]) : "-"; q = n ? sprintf("%.2f", p99[i] / p99[n]) : "-"
      c = (n && ticks[i] > 0 && ticks[n] > 0) ? sprintf("%.2f", (ticks[i] / rps[i]) / (ticks[n] / rps[n])) : "-"
      printf "| %-7s | %7.0f | %6.2f | %6.2f | %6d | %10s | %13s | %9s | %9s |\n", name[i], rps[i], p50[i], p99[i], errs[i], cpu, r, q, c
    }
  }'
