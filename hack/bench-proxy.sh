#!/usr/bin/env bash
# Compares slugway's proxy with nginx and HAProxy as keep-alive reverse proxies in
# front of one origin, with the same wrk settings, on loopback only:
#   direct (wrk → origin), slugway, nginx, haproxy.
# slugway's routes come from a real local kube-apiserver + etcd (hack/benchenv).
# nginx, HAProxy and wrk are installed from Debian's packages when missing.
#
#   hack/bench-proxy.sh                  # 10s per target, 2 threads, 64 connections
#   DURATION=30s CONNS=128 hack/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ORIGIN=127.0.0.1:28081 SLUGWAY=127.0.0.1:28080 ADMIN=127.0.0.1:29080 NGINX=127.0.0.1:28082 HAPROXY=127.0.0.1:28083
WORK=$(mktemp -d /tmp/slugway-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages" >&2
  apt-get update -qq
  pkgs=("${need[@]/nginx/nginx-light}")
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

echo "building slugway, the origin and the control-plane helper" >&2
go build -o "$WORK/slugway" .
go build -o "$WORK/benchorigin" ./hack/benchorigin
go build -o "$WORK/benchenv" ./hack/benchenv

wait_http() { # url: wait until it answers 200
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; exit 1
}

"$WORK/benchorigin" -listen "$ORIGIN" & PIDS+=($!)
"$WORK/benchenv" -origin "http://$ORIGIN" -write-kubeconfig "$WORK/kubeconfig" > "$WORK/benchenv.out" 2>"$WORK/benchenv.log" & PIDS+=($!)
for _ in $(seq 1 600); do grep -q ready "$WORK/benchenv.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/benchenv.out" || { cat "$WORK/benchenv.log" >&2; exit 1; }
KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway" proxy --listen "$SLUGWAY" --admin-listen "$ADMIN" --allow-loopback --pprof=${PPROF:-false} 2>"$WORK/slugway.log" & PIDS+=($!)
wait_http "http://$ADMIN/readyz"

cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  upstream origin { server $ORIGIN; keepalive 128; }
  server {
    listen $NGINX;
    location /bench/ {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
    }
  }
}
CONF
"$NGINX_BIN" -c "$WORK/nginx.conf" & PIDS+=($!)

cat > "$WORK/haproxy.cfg" <<CONF
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind $HAPROXY
  default_backend origin
backend origin
  server o1 $ORIGIN
CONF
haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!)

for u in "http://$ORIGIN/bench/hello" "http://$SLUGWAY/bench/hello" "http://$NGINX/bench/hello" "http://$HAPROXY/bench/hello"; do wait_http "$u"; done

to_ms() { # wrk latency like 690.00us / 5.25ms / 1.02s → milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
declare -A RPS P50 P99
for target in direct slugway nginx haproxy; do
  case $target in
    direct) addr=$ORIGIN ;; slugway) addr=$SLUGWAY ;; nginx) addr=$NGINX ;; haproxy) addr=$HAPROXY ;;
  esac
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$addr/bench/hello" >/dev/null
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://$addr/bench/hello")
  if echo "$out" | grep -q "Non-2xx"; then echo "$target answered errors:"$'\n'"$out" >&2; exit 1; fi
  RPS[$target]=$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
  P50[$target]=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  P99[$target]=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  echo "$target: ${RPS[$target]} req/s" >&2
done

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, $(date -u +%Y-%m-%d)"
printf '| %-8s | %8s | %8s | %8s | %13s | %13s |\n' target "req/s" "p50 ms" "p99 ms" "req/s÷nginx" "p99÷nginx"
printf '|%s|%s|%s|%s|%s|%s|\n' ---------- ---------: ---------: ---------: ---------------: ---------------:
for target in direct slugway nginx haproxy; do
  awk -v t="$target" -v r="${RPS[$target]}" -v a="${P50[$target]}" -v b="${P99[$target]}" -v nr="${RPS[nginx]}" -v nb="${P99[nginx]}" \
    'BEGIN { printf "| %-8s | %8d | %8.2f | %8.2f | %13.2f | %13.2f |\n", t, r, a, b, r/nr, b/nb }'
done
