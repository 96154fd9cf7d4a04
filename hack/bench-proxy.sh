#!/usr/bin/env bash
# Compares slugway's proxy with nginx and HAProxy as keep-alive reverse proxies in
# front of one origin, with the same wrk settings, on loopback only:
#   direct (wrk → origin), slugway, nginx, haproxy.
# slugway's routes come from a real local kube-apiserver + etcd (hack/benchenv).
# nginx, HAProxy and wrk are installed from Debian's packages when missing.
#
# Scenarios (response size : connections), each against all four targets in turn:
#   small:64 (the headline: an 19-byte JSON body), 1k:64, 64k:64, small:16, small:256.
# For every run it reads the proxy processes' CPU time (utime+stime in
# /proc/<pid>/stat: slugway; nginx master and workers; haproxy) before and after,
# and prints CPU seconds per 100k requests next to req/s, p50 and p99, with the
# ratios to nginx measured in the same run.
#
#   hack/bench-proxy.sh                        # 10s per run, 2 threads
#   DURATION=5s SCENARIOS="small:64 64k:64" hack/bench-proxy.sh
#   BASELINE=4ef7626 hack/bench-proxy.sh       # also slugway built from that git commit ("baseline")
#   PROFILE=20 hack/bench-proxy.sh             # then a 20s CPU profile of slugway (small:64)
#                                              # into $PROFILE_OUT (default /tmp/slugway-bench.pprof)
#   BASELINE=HEAD SLUGWAY_ENV=GOMAXPROCS=1 hack/bench-proxy.sh
#                                              # environment for the slugway binary (BASELINE_ENV: the baseline's)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
SCENARIOS=${SCENARIOS:-small:64 1k:64 64k:64 small:16 small:256}
PROFILE=${PROFILE:-0}
PROFILE_OUT=${PROFILE_OUT:-/tmp/slugway-bench.pprof}
[ "$PROFILE" != 0 ] && PPROF=true
CLK_TCK=$(getconf CLK_TCK)
ORIGIN=127.0.0.1:28081 SLUGWAY=127.0.0.1:28080 ADMIN=127.0.0.1:29080 NGINX=127.0.0.1:28082 HAPROXY=127.0.0.1:28083
BASE=127.0.0.1:28084 BASE_ADMIN=127.0.0.1:29084 BASELINE=${BASELINE:-}
SLUGWAY_ENV=${SLUGWAY_ENV:-} BASELINE_ENV=${BASELINE_ENV:-}
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
if [ -n "$BASELINE" ]; then
  echo "building slugway at $BASELINE as the baseline" >&2
  mkdir -p "$WORK/base"
  git archive "$BASELINE" | tar -x -C "$WORK/base"
  (cd "$WORK/base" && go build -o "$WORK/slugway-base" .)
fi

wait_http() { # url: wait until it answers 200
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; exit 1
}

"$WORK/benchorigin" -listen "$ORIGIN" & PIDS+=($!); ORIGIN_PID=$!
"$WORK/benchenv" -origin "http://$ORIGIN" -write-kubeconfig "$WORK/kubeconfig" > "$WORK/benchenv.out" 2>"$WORK/benchenv.log" & PIDS+=($!)
for _ in $(seq 1 600); do grep -q ready "$WORK/benchenv.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/benchenv.out" || { cat "$WORK/benchenv.log" >&2; exit 1; }
env $SLUGWAY_ENV KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway" proxy --listen "$SLUGWAY" --admin-listen "$ADMIN" --allow-loopback --pprof="${PPROF:-false}" 2>"$WORK/slugway.log" & PIDS+=($!); SLUGWAY_PID=$!
wait_http "http://$ADMIN/readyz"
if [ -n "$BASELINE" ]; then
  env $BASELINE_ENV KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway-base" proxy --listen "$BASE" --admin-listen "$BASE_ADMIN" --allow-loopback 2>"$WORK/slugway-base.log" & PIDS+=($!); BASE_PID=$!
  wait_http "http://$BASE_ADMIN/readyz"
fi

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
  upstream origin { server $ORIGIN; keepalive 256; }
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
"$NGINX_BIN" -c "$WORK/nginx.conf" & PIDS+=($!); NGINX_PID=$!

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
haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!); HAPROXY_PID=$!


to_ms() { # wrk latency like 690.00us / 5.25ms / 1.02s → milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
pids_of() { # target → the processes doing its work
  case $1 in
    direct) echo "$ORIGIN_PID" ;;
    slugway) echo "$SLUGWAY_PID" ;;
    baseline) echo "$BASE_PID" ;;
    nginx) echo "$NGINX_PID" "$(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
    haproxy) echo "$HAPROXY_PID" ;;
  esac
}
cpu_ticks() { # pids → summed utime+stime (clock ticks); the comm field may hold spaces
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
path_for() { case $1 in small) echo /bench/hello ;; 1k) echo /bench/1k ;; 64k) echo /bench/64k ;; *) echo "unknown size $1 (small, 1k, 64k)" >&2; exit 1 ;; esac; }

urls=("http://$ORIGIN" "http://$SLUGWAY" "http://$NGINX" "http://$HAPROXY")
[ -z "$BASELINE" ] || urls+=("http://$BASE")
for u in "${urls[@]}"; do
  for s in small 1k 64k; do wait_http "$u$(path_for $s)"; done
done

TARGETS=(direct slugway nginx haproxy)
[ -z "$BASELINE" ] || TARGETS=(direct slugway baseline nginx haproxy)
declare -A RPS P50 P99 CPU ERR
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for sc in $SCENARIOS; do
  conns=${sc##*:} path=$(path_for "${sc%%:*}")
  for target in "${TARGETS[@]}"; do
    case $target in
      direct) addr=$ORIGIN ;; slugway) addr=$SLUGWAY ;; baseline) addr=$BASE ;; nginx) addr=$NGINX ;; haproxy) addr=$HAPROXY ;;
    esac
    wrk -t"$THREADS" -c"$conns" -d"$WARMUP" "http://$addr$path" >/dev/null
    read -ra pids <<<"$(pids_of "$target")"
    before=$(cpu_ticks "${pids[@]}")
    out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "http://$addr$path")
    after=$(cpu_ticks "${pids[@]}")
    if echo "$out" | grep -q "Non-2xx"; then echo "$target answered errors:"$'\n'"$out" >&2; exit 1; fi
    k="$sc/$target"
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    RPS[$k]=$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
    P50[$k]=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
    P99[$k]=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    CPU[$k]=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz / n * 100000 }')
    ERR[$k]=$(echo "$out" | awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10; f=1} END {if (!f) print 0}')
    echo "$sc $target: ${RPS[$k]} req/s, p99 ${P99[$k]} ms, ${CPU[$k]} CPU s/100k req" >&2
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "wrk -t$THREADS -d$DURATION (warm-up $WARMUP), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $LOAD_START at the start, $LOAD_END at the end"
echo "CPU: user+sys seconds per 100k requests of the proxy's processes (for direct: the origin's)"
[ -z "$BASELINE" ] || echo "baseline: slugway built from $(git rev-parse --short "$BASELINE")"
for sc in $SCENARIOS; do
  echo
  echo "### ${sc%%:*} response, ${sc##*:} connections"
  echo
  printf '| %-8s | %8s | %7s | %7s | %9s | %6s | %11s | %9s | %9s |\n' target "req/s" "p50 ms" "p99 ms" "CPU s/100k" errors "req/s÷nginx" "p99÷nginx" "CPU÷nginx"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ---------: --------: --------: -----------: -------: ------------: ----------: ----------:
  for target in "${TARGETS[@]}"; do
    k="$sc/$target" n="$sc/nginx"
    awk -v t="$target" -v r="${RPS[$k]}" -v a="${P50[$k]}" -v b="${P99[$k]}" -v c="${CPU[$k]}" -v e="${ERR[$k]}" \
      -v nr="${RPS[$n]}" -v nb="${P99[$n]}" -v nc="${CPU[$n]}" \
      'BEGIN { printf "| %-8s | %8d | %7.2f | %7.2f | %10.2f | %6d | %11.2f | %9.2f | %9s |\n", t, r, a, b, c, e, r/nr, b/nb, (t == "direct" ? "-" : sprintf("%.2f", c/nc)) }'
  done
done

if [ "$PROFILE" != 0 ]; then
  echo "profiling slugway for ${PROFILE}s under small:64 into $PROFILE_OUT" >&2
  wrk -t"$THREADS" -c64 -d"$((PROFILE + 2))s" "http://$SLUGWAY/bench/hello" >/dev/null &
  curl -s -o "$PROFILE_OUT" "http://$ADMIN/debug/pprof/profile?seconds=$PROFILE"
  wait $!
  echo "top: go tool pprof -top $WORK/slugway $PROFILE_OUT (KEEP=1 keeps the binary)" >&2
  cp "$WORK/slugway" "${PROFILE_OUT%.pprof}.bin"
fi
