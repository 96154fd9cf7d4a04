#!/usr/bin/env bash
# Compares slugway's proxy with the reverse proxies users would pick instead, with the
# same wrk load, on loopback only, and prints markdown tables with every peer as a ratio
# to nginx measured in the same run.
#
# Default mode: one Go origin (hack/benchorigin), routes from a real local kube-apiserver
# + etcd (hack/benchenv), then each target in turn:
#   direct       wrk → the origin
#   slugway      this tree's `slugway proxy`
#   baseline     `slugway proxy` built from $BASELINE (only with BASELINE=<commit>)
#   baseline2    the same from $BASELINE2 (a second commit, e.g. the one before the first's last change)
#   nginx        nginx as users run it: upstream keepalive, default proxy buffering
#   nginx-nobuf  the same with `proxy_buffering off` (the headline config before 2026-12)
#   haproxy      HAProxy, keep-alive both sides
#   caddy        Caddy, a plain `reverse_proxy` (Traefik cannot be built here, see docs/benchmarks.md)
#   slugway-trace      (opt-in, PEERS) `slugway proxy`, the same flags as slugway, plus tracing:
#                      --otlp-endpoint to hack/benchotlp (a real OTLP gRPC receiver, the official
#                      protobuf packages over grpc-go, started here on loopback), --trace-sampling 1
#   slugway-trace-low  (opt-in, PEERS) the same with --trace-sampling $TRACE_LOW_SAMPLING (default 0.01)
# The slugway and baseline targets run with tracing off (OTEL_EXPORTER_OTLP_* unset; checked
# in their start-up log line), so `slugway` is the tracing-off figure. With a trace target the
# tables gain one of ratios to slugway in the same round, with the receiver's CPU apart (it is
# never counted as the proxy's), and the spans the receiver got for the requests wrk sent.
# nginx, HAProxy, Caddy and wrk are installed from Debian's packages when missing.
#
# MODE=make-run: the proxy as `make run` starts it. hack/run (built from this tree, in a
# scratch copy of the repository layout so the shared bin/ is not touched) runs in its own
# session, as in a terminal of its own, with its control plane, controller, proxy and
# skeleton-svc. Targets: direct (skeleton-svc), make-run (its proxy), by-hand (a second
# `slugway proxy` with the same flags against the same apiserver, started in a session of
# its own as from a second terminal), nginx (own session, same config as above, in front
# of skeleton-svc), plus PEERS if given. make run's fixed ports (9080, 8081, 8082, 9311)
# must be free: it runs in a network namespace of its own (`unshare --net`, loopback only) unless NETNS=0.
#
# Scenarios (response size : connections): small:64 (the headline: a 19-byte JSON body),
# 1k:64, 64k:64, small:16, small:256; make-run mode: small only (default small:64 small:16).
# For every measured run it reads the target's CPU time (utime+stime in /proc/<pid>/stat of
# every process doing its work) before and after, and reports CPU seconds per 100k
# requests next to req/s, p50 and p99.
#
#   hack/bench-proxy.sh                         # one round, 10s per measurement (~8 min)
#   RUNS=3 BASELINE=d763b02 hack/bench-proxy.sh # three rounds (~27 min), target order rotated per round,
#                                               # medians of the per-round figures and ratios
#   BASELINE=d763b02 BASELINE2=018436a ...       # two baselines in the same run (targets baseline, baseline2)
#   DURATION=5s SCENARIOS="small:64 64k:64" PEERS="nginx caddy" hack/bench-proxy.sh
#   RUNS=3 SCENARIOS="small:64 1k:64 small:256" PEERS="nginx slugway-trace slugway-trace-low" hack/bench-proxy.sh
#                                               # the cost of tracing (~11 min; docs/benchmarks.md "Tracing cost")
#   MODE=make-run RUNS=3 hack/bench-proxy.sh    # the proxy as `make run` starts it (~7 min)
#   OUT=/tmp/bench.md hack/bench-proxy.sh       # also write the tables there (raw rows: /tmp/bench.tsv)
#   PROFILE=20 hack/bench-proxy.sh              # then a 20s CPU profile of slugway (small:64)
#                                               # into $PROFILE_OUT (default /tmp/slugway-bench.pprof)
#   BASELINE=HEAD SLUGWAY_ENV=GOMAXPROCS=1 hack/bench-proxy.sh
#                                               # environment for the slugway binary (BASELINE_ENV: the baseline's)
#   ASSETS=/dir ...                             # kube-apiserver and etcd from there (default: bin/k8s-v1.37.2)
#   HOLD=600 ...                                # keep everything running 600s after the tables (for perf, strace)
#   KEEP=1 ...                                  # keep the scratch directory (binaries, configs, logs)
#
# Every process it starts is in a process group it ends on exit (Ctrl-C included); the
# processes those start are recorded once everything is up and killed if still alive.
# It refuses to run if any of them listens outside loopback.
set -euo pipefail
set -m # each background job in its own process group, so that cleanup ends it whole
cd "$(dirname "$0")/.."
MODE=${MODE:-proxies}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
RUNS=${RUNS:-1}
PROFILE=${PROFILE:-0}
PROFILE_OUT=${PROFILE_OUT:-/tmp/slugway-bench.pprof}
BASELINE=${BASELINE:-} BASELINE2=${BASELINE2:-}
SLUGWAY_ENV=${SLUGWAY_ENV:-} BASELINE_ENV=${BASELINE_ENV:-}
TRACE_LOW_SAMPLING=${TRACE_LOW_SAMPLING:-0.01} # slugway-trace-low's --trace-sampling
OUT=${OUT:-}
ASSETS=${ASSETS:-${KUBEBUILDER_ASSETS:-$PWD/bin/k8s-v1.37.2}} # kube-apiserver and etcd (hack/controlplane.sh builds them)
# envtest gives kube-apiserver 20 s to start by default; a loaded machine needs longer
export KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=${KUBEBUILDER_CONTROLPLANE_START_TIMEOUT:-300s}
case $MODE in
  proxies)
    SCENARIOS=${SCENARIOS:-small:64 1k:64 64k:64 small:16 small:256}
    PEERS=${PEERS:-nginx nginx-nobuf haproxy caddy} ;;
  make-run)
    SCENARIOS=${SCENARIOS:-small:64 small:16}
    PEERS=${PEERS:-nginx}
    [ -z "$BASELINE$BASELINE2" ] || { echo "BASELINE is not supported with MODE=make-run" >&2; exit 2; } ;;
  *) echo "MODE=$MODE: use proxies (the default) or make-run" >&2; exit 2 ;;
esac
[[ " $PEERS " == *" nginx "* ]] || PEERS="nginx $PEERS" # every ratio is to nginx
TRACED=""                                               # the trace targets among PEERS
for p in $PEERS; do [[ $p != slugway-trace* ]] || TRACED+="$p "; done
[ -z "$TRACED" ] || [ "$MODE" = proxies ] || { echo "PEERS: ${TRACED% } need MODE=proxies" >&2; exit 2; }
awk -v s="$TRACE_LOW_SAMPLING" 'BEGIN { exit !(s ~ /^(0|1|0?\.[0-9]+|1\.0*)$/) }' ||
  { echo "TRACE_LOW_SAMPLING=$TRACE_LOW_SAMPLING: want a fraction from 0 to 1" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS=$RUNS: want a positive integer" >&2; exit 2; }
[ "$PROFILE" = 0 ] || [ "$MODE" = proxies ] || { echo "PROFILE needs MODE=proxies" >&2; exit 2; }
[ "$PROFILE" != 0 ] && PPROF=true
[ -n "$BASELINE" ] || [ -z "$BASELINE2" ] || { echo "BASELINE2 needs BASELINE" >&2; exit 2; }
# The baseline targets, each `slugway proxy` built from a commit: BASELINES lists them,
# and BREV, BLISTEN, BADMIN and BPID give each one's commit, addresses and pid.
BASELINES=()
declare -A BREV=() BLISTEN=() BADMIN=() BPID=()
add_baseline() { # target var-name commit-ish listen admin
  local rev
  rev=$(git rev-parse --verify --quiet "$3^{commit}") || { echo "$2=$3 is not a commit here" >&2; exit 2; }
  BASELINES+=("$1"); BREV[$1]=$rev; BLISTEN[$1]=$4; BADMIN[$1]=$5
}
if [ "$MODE" = make-run ] && [ "${NETNS:-1}" = 1 ] && [ -z "${BENCH_IN_NETNS:-}" ]; then
  # make run's ports are fixed (9080, 8081, 8082, 9311) and another `make run` may hold
  # them: run in a network namespace of our own, which has nothing but loopback.
  # kube-apiserver wants a default route to pick its advertise address: the namespace's
  # lo gets 192.0.2.1 (a documentation address) and the default route, so nothing can leave.
  echo "MODE=make-run: continuing in a network namespace of its own (loopback only; NETNS=0 to stay)" >&2
  export MODE RUNS SCENARIOS PEERS DURATION WARMUP THREADS ASSETS OUT KEEP HOLD
  exec env BENCH_IN_NETNS=1 unshare --net -- bash -c \
    'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && ip route add default dev lo && exec "$0"' "$PWD/hack/bench-proxy.sh"
fi
CLK_TCK=$(getconf CLK_TCK)
# Loopback addresses only. make run's own ports are fixed by hack/run.
ORIGIN=127.0.0.1:28081 SLUGWAY=127.0.0.1:28080 ADMIN=127.0.0.1:29080 NGINX=127.0.0.1:28082 HAPROXY=127.0.0.1:28083
CADDY=127.0.0.1:28085 NGINX_NOBUF=127.0.0.1:28086
[ -z "$BASELINE" ] || add_baseline baseline BASELINE "$BASELINE" 127.0.0.1:28084 127.0.0.1:29084
[ -z "$BASELINE2" ] || add_baseline baseline2 BASELINE2 "$BASELINE2" 127.0.0.1:28090 127.0.0.1:29090
MR_PROXY=127.0.0.1:28090 HAND=127.0.0.1:28091 HAND_ADMIN=127.0.0.1:29091 MR_SVC=127.0.0.1:9311
TRACE=127.0.0.1:28087 TRACE_ADMIN=127.0.0.1:29087 TRACE_LOW=127.0.0.1:28088 TRACE_LOW_ADMIN=127.0.0.1:29088
OTLP=127.0.0.1:28089 OTLP_STATS=127.0.0.1:29089 # hack/benchotlp: OTLP gRPC, and its span counts over HTTP
# slugway and baseline are the tracing-off figures, whatever the caller's environment says
NO_OTEL=(-u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)

WORK=$(mktemp -d /tmp/slugway-bench.XXXXXX)
GROUPS_STARTED=() # process group ids (= the leader's pid) of everything started here
RECORDED=()       # pid:starttime of every descendant, recorded once all is up
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
descendants() { # pid → it and all its descendants
  local p c
  for p in "$@"; do
    echo "$p"
    for c in $(pgrep -P "$p" || true); do descendants "$c"; done
  done
}
running() { local s; s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}'); [ -n "$s" ] && [ "$s" != Z ]; }
alive() { local p=${1%%:*} t=${1##*:}; [ "$(starttime "$p")" = "$t" ] && running "$p"; } # pid:starttime, not a zombie
group_alive() { local p; for p in $(pgrep -g "$1" || true); do running "$p" && return 0; done; return 1; }
cleanup() {
  trap - EXIT INT TERM
  local g i p left
  for ((i = ${#GROUPS_STARTED[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${GROUPS_STARTED[i]}" 2>/dev/null || true
  done
  for _ in $(seq 1 200); do # up to 20 s: make run stops its control plane on SIGTERM
    left=0
    for g in "${GROUPS_STARTED[@]}"; do group_alive "$g" && left=1; done
    for p in "${RECORDED[@]}"; do alive "$p" && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for g in "${GROUPS_STARTED[@]}"; do group_alive "$g" && kill -KILL -- "-$g" 2>/dev/null && echo "killed process group $g (did not stop on SIGTERM)" >&2; done
  for p in "${RECORDED[@]}"; do alive "$p" && kill -KILL "${p%%:*}" 2>/dev/null && echo "killed pid ${p%%:*} (left behind)" >&2; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg name cmd...: start cmd in the background in a process group of its own (same session).
start_bg() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  GROUPS_STARTED+=($!)
  LAST_PID=$!
}
# start_session name cmd...: start cmd in a session of its own, as if from another terminal (a
# separate scheduler autogroup, see docs/benchmarks.md); LAST_PID is cmd's own pid.
start_session() {
  local name=$1; shift
  rm -f "$WORK/$name.pid"
  setsid -w bash -c 'echo $$ >"$0"; exec "$@"' "$WORK/$name.pid" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  for _ in $(seq 1 50); do [ -s "$WORK/$name.pid" ] && break; sleep 0.1; done
  LAST_PID=$(cat "$WORK/$name.pid")
  GROUPS_STARTED+=("$LAST_PID")
}
port_free() { [ -z "$(ss -ltnH "sport = :${1##*:}")" ]; }
wait_http() { # url: wait until it answers 200
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 (logs in $WORK, KEEP=1 keeps them)" >&2; exit 1
}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
[[ " $PEERS " != *" haproxy "* ]] || command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[[ " $PEERS " != *" caddy "* ]] || command -v caddy >/dev/null || need+=(caddy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages" >&2
  apt-get update -qq
  pkgs=("${need[@]/nginx/nginx-light}")
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)

[ -x "$ASSETS/kube-apiserver" ] && [ -x "$ASSETS/etcd" ] || { echo "no kube-apiserver and etcd in $ASSETS: run hack/controlplane.sh first (or set ASSETS)" >&2; exit 1; }
ports=()
if [ "$MODE" = proxies ]; then
  ports=("$ORIGIN" "$SLUGWAY" "$ADMIN")
  for b in "${BASELINES[@]}"; do ports+=("${BLISTEN[$b]}" "${BADMIN[$b]}"); done
else
  ports=("$MR_PROXY" 127.0.0.1:9080 127.0.0.1:8081 127.0.0.1:8082 "$MR_SVC" "$HAND" "$HAND_ADMIN")
fi
for p in $PEERS; do
  case $p in nginx) ports+=("$NGINX") ;; nginx-nobuf) ports+=("$NGINX_NOBUF") ;; haproxy) ports+=("$HAPROXY") ;; caddy) ports+=("$CADDY") ;;
    slugway-trace) ports+=("$TRACE" "$TRACE_ADMIN") ;; slugway-trace-low) ports+=("$TRACE_LOW" "$TRACE_LOW_ADMIN") ;;
    *) echo "PEERS: unknown peer $p (nginx, nginx-nobuf, haproxy, caddy, slugway-trace, slugway-trace-low)" >&2; exit 2 ;;
  esac
done
[ -z "$TRACED" ] || ports+=("$OTLP" "$OTLP_STATS")
for a in "${ports[@]}"; do
  port_free "$a" || { echo "port ${a##*:} is in use (ss -ltnp); stop what holds it first" >&2; ss -ltnpH "sport = :${a##*:}" >&2; exit 1; }
done

echo "building slugway$([ "$MODE" = proxies ] && echo ", the origin and the control-plane helper" || echo ", skeleton-svc and hack/run")" >&2
CGO_ENABLED=0 go build -o "$WORK/slugway" . # as hack/run.sh builds it
if [ "$MODE" = proxies ]; then
  go build -o "$WORK/benchorigin" ./hack/benchorigin
  go build -o "$WORK/benchenv" ./hack/benchenv
  [ -z "$TRACED" ] || go build -o "$WORK/benchotlp" ./hack/benchotlp
  for b in "${BASELINES[@]}"; do
    echo "building slugway at $(git rev-parse --short "${BREV[$b]}") as $b" >&2
    mkdir -p "$WORK/src-$b"
    git archive "${BREV[$b]}" | tar -x -C "$WORK/src-$b"
    (cd "$WORK/src-$b" && CGO_ENABLED=0 go build -o "$WORK/slugway-$b" .)
  done
fi

# upstream_conf name listen origin prefix extra: an nginx server block.
nginx_server() {
  cat <<CONF
  server {
    listen $1;
    location $3 {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;$4
    }
  }
CONF
}
write_nginx() { # origin prefix
  {
    cat <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  upstream origin { server $1; keepalive 256; }
CONF
    nginx_server "$NGINX" "$1" "$2" ""
    [[ " $PEERS " != *" nginx-nobuf "* ]] || nginx_server "$NGINX_NOBUF" "$1" "$2" $'\n      proxy_buffering off;'
    echo "}"
  } >"$WORK/nginx.conf"
}
write_haproxy() { # origin
  cat >"$WORK/haproxy.cfg" <<CONF
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
  server o1 $1
CONF
}
write_caddy() { # origin
  mkdir -p "$WORK/caddy"
  cat >"$WORK/Caddyfile" <<CONF
{
	admin off
	auto_https off
	storage file_system $WORK/caddy
}
http://:${CADDY##*:} {
	bind ${CADDY%:*}
	reverse_proxy $1
}
CONF
}
# start_peers origin prefix starter: nginx, HAProxy, Caddy (those in PEERS) with starter (start_bg or start_session).
start_peers() {
  write_nginx "$1" "$2"
  $3 nginx "$NGINX_BIN" -c "$WORK/nginx.conf"; NGINX_PID=$LAST_PID
  if [[ " $PEERS " == *" haproxy "* ]]; then
    write_haproxy "$1"
    $3 haproxy "$HAPROXY_BIN" -f "$WORK/haproxy.cfg" -db; HAPROXY_PID=$LAST_PID
  fi
  if [[ " $PEERS " == *" caddy "* ]]; then
    write_caddy "$1"
    $3 caddy env HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" \
      caddy run --config "$WORK/Caddyfile" --adapter caddyfile; CADDY_PID=$LAST_PID
  fi
}

if [ "$MODE" = proxies ]; then
  start_bg origin "$WORK/benchorigin" -listen "$ORIGIN"; ORIGIN_PID=$LAST_PID
  start_bg benchenv env KUBEBUILDER_ASSETS="$ASSETS" "$WORK/benchenv" -origin "http://$ORIGIN" -write-kubeconfig "$WORK/kubeconfig"
  for _ in $(seq 1 900); do grep -q ready "$WORK/benchenv.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/benchenv.out" || { cat "$WORK/benchenv.log" >&2; exit 1; }
  start_bg slugway env "${NO_OTEL[@]}" $SLUGWAY_ENV KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway" proxy --listen "$SLUGWAY" --admin-listen "$ADMIN" --allow-loopback --pprof="${PPROF:-false}"
  SLUGWAY_PID=$LAST_PID
  wait_http "http://$ADMIN/readyz"
  for b in "${BASELINES[@]}"; do
    start_bg "slugway-$b" env "${NO_OTEL[@]}" $BASELINE_ENV KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway-$b" proxy --listen "${BLISTEN[$b]}" --admin-listen "${BADMIN[$b]}" --allow-loopback
    BPID[$b]=$LAST_PID
    wait_http "http://${BADMIN[$b]}/readyz"
  done
  if [ -n "$TRACED" ]; then
    start_bg otlp "$WORK/benchotlp" -listen "$OTLP" -stats "$OTLP_STATS"; OTLP_PID=$LAST_PID
    wait_http "http://$OTLP_STATS/spans"
    # start_trace name listen admin sampling: slugway's command line, plus tracing to benchotlp;
    # OTEL_SERVICE_NAME tells the receiver whose spans it got.
    start_trace() {
      start_bg "$1" env $SLUGWAY_ENV OTEL_SERVICE_NAME="$1" KUBECONFIG="$WORK/kubeconfig" "$WORK/slugway" proxy --listen "$2" --admin-listen "$3" \
        --allow-loopback --pprof="${PPROF:-false}" --otlp-endpoint "http://$OTLP" --trace-sampling "$4"
      wait_http "http://$3/readyz"
    }
    [[ " $PEERS " != *" slugway-trace "* ]] || { start_trace slugway-trace "$TRACE" "$TRACE_ADMIN" 1; TRACE_PID=$LAST_PID; }
    [[ " $PEERS " != *" slugway-trace-low "* ]] || { start_trace slugway-trace-low "$TRACE_LOW" "$TRACE_LOW_ADMIN" "$TRACE_LOW_SAMPLING"; TRACE_LOW_PID=$LAST_PID; }
  fi
  # each proxy logs whether tracing is on at start-up: the tables' labels must be true
  tracing_is() { grep -q "starting proxy.*\"tracing\": *$2" "$WORK/$1.log" || { echo "$1 does not log tracing $2 at start-up:" >&2; cat "$WORK/$1.log" >&2; exit 1; }; }
  tracing_is slugway false
  # a baseline may predate tracing (no "tracing" field at all): then it cannot trace
  untraced() { grep -q 'starting proxy.*"tracing"' "$WORK/$1.log" && tracing_is "$1" false || true; }
  for b in "${BASELINES[@]}"; do untraced "slugway-$b"; done
  for t in $TRACED; do tracing_is "$t" true; done
  start_peers "$ORIGIN" /bench/ start_bg
  TARGETS=(direct slugway)
  TARGETS+=("${BASELINES[@]}")
  PATHS=(/bench/hello /bench/1k /bench/64k)
else
  # A scratch copy of the repository layout for hack/run: the same go.mod and config/, bin/
  # holding the binaries hack/run.sh would build and the shared control plane binaries.
  MR=$WORK/root
  mkdir -p "$MR/bin"
  cp go.mod "$MR/"
  ln -s "$PWD/config" "$MR/config"
  ln -s "$ASSETS" "$MR/bin/k8s-v1.37.2"
  cp "$WORK/slugway" "$MR/bin/slugway"
  go build -o "$MR/bin/skeleton-svc" ./examples/skeleton-svc
  # hack/run starts grpc-svc too (routing by host); trees before it (d763b02) have none
  [ ! -d examples/grpc-svc ] || go build -o "$MR/bin/grpc-svc" ./examples/grpc-svc
  go build -o "$MR/bin/slugway-run" ./hack/run
  echo "starting make run's runner (its own session, like a terminal; output in $WORK/make-run.out)" >&2
  start_session make-run env -C "$MR" PROXY_ADDR="$MR_PROXY" DATA_DIR="$WORK/run-data" bin/slugway-run; RUN_PID=$LAST_PID
  for _ in $(seq 1 1800); do grep -q "slugway is running" "$WORK/make-run.out" 2>/dev/null && break; kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
  grep -q "slugway is running" "$WORK/make-run.out" || { cat "$WORK/make-run.out" "$WORK/make-run.log" >&2; exit 1; }
  child_with() { # substring of a command line → the pid of make run's child running it
    local p
    for p in $(descendants "$RUN_PID"); do
      if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$1"; then echo "$p"; return; fi
    done
  }
  MR_PROXY_PID=$(child_with "proxy --listen $MR_PROXY ") ORIGIN_PID=$(child_with "/bin/skeleton-svc")
  [ -n "$MR_PROXY_PID" ] && [ -n "$ORIGIN_PID" ] || { echo "cannot find make run's proxy or skeleton-svc" >&2; exit 1; }
  start_session by-hand env KUBECONFIG="$WORK/run-data/kubeconfig" "$WORK/slugway" proxy --listen "$HAND" --admin-listen "$HAND_ADMIN" --allow-loopback
  HAND_PID=$LAST_PID
  wait_http "http://$HAND_ADMIN/readyz"
  start_peers "$MR_SVC" /skeleton-svc/ start_session
  ORIGIN=$MR_SVC
  TARGETS=(direct make-run by-hand)
  PATHS=(/skeleton-svc/hello)
fi
TARGETS+=($PEERS)

addr_of() {
  case $1 in
    direct) echo "$ORIGIN" ;; slugway) echo "$SLUGWAY" ;; baseline | baseline2) echo "${BLISTEN[$1]}" ;; nginx) echo "$NGINX" ;; nginx-nobuf) echo "$NGINX_NOBUF" ;;
    haproxy) echo "$HAPROXY" ;; caddy) echo "$CADDY" ;; make-run) echo "$MR_PROXY" ;; by-hand) echo "$HAND" ;;
    slugway-trace) echo "$TRACE" ;; slugway-trace-low) echo "$TRACE_LOW" ;;
  esac
}
pids_of() { # target → the processes doing its work
  case $1 in
    direct) echo "$ORIGIN_PID" ;;
    slugway) echo "$SLUGWAY_PID" ;;
    baseline | baseline2) echo "${BPID[$1]}" ;;
    nginx | nginx-nobuf) descendants "$NGINX_PID" | tr '\n' ' ' ;;
    haproxy) echo "$HAPROXY_PID" ;;
    caddy) echo "$CADDY_PID" ;;
    make-run) echo "$MR_PROXY_PID" ;;
    by-hand) echo "$HAND_PID" ;;
    slugway-trace) echo "$TRACE_PID" ;; # the proxy alone: the OTLP receiver's CPU is counted apart (OTLP_CPU)
    slugway-trace-low) echo "$TRACE_LOW_PID" ;;
  esac
}
path_for() {
  case $MODE/$1 in
    */small) echo "${PATHS[0]}" ;; proxies/1k) echo /bench/1k ;; proxies/64k) echo /bench/64k ;;
    *) echo "unknown size $1 (small, 1k, 64k; make-run mode: small)" >&2; exit 2 ;;
  esac
}
for sc in $SCENARIOS; do path_for "${sc%%:*}" >/dev/null; [[ ${sc##*:} =~ ^[0-9]+$ ]] || { echo "scenario $sc: want size:connections" >&2; exit 2; }; done
for t in "${TARGETS[@]}"; do
  for p in "${PATHS[@]}"; do wait_http "http://$(addr_of "$t")$p"; done
done

# Everything is up: record every process started, and check none listens outside loopback.
ours=" "
for g in "${GROUPS_STARTED[@]}"; do for p in $(descendants "$g"); do
  RECORDED+=("$p:$(starttime "$p")"); ours+="$p "
done; done
bad=$(ss -ltnupH | awk -v ours="$ours" '{
  split($0, a, "pid="); for (i = 2; i in a; i++) { split(a[i], b, ","); if (index(ours, " " b[1] " ")) { print; break } } }' |
  awk '$5 !~ /^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):[0-9]+$/')
[ -z "$bad" ] || { echo "refusing to run: started processes listen outside loopback:"$'\n'"$bad" >&2; exit 1; }

cpu_ticks() { # pids → summed utime+stime (clock ticks); the comm field may hold spaces
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
to_ms() { # wrk latency like 690.00us / 5.25ms / 1.02s → milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[++n] = $1 } END { if (!n) print "nan"; else print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) }'; }
med_of() { # array scenario target → the median over the rounds
  local -n arr=$1
  local x="" r
  for ((r = 1; r <= RUNS; r++)); do x+="${arr[$r/$2/$3]} "; done
  median <<<"$x"
}

per_round=$(( ${#TARGETS[@]} * $(wc -w <<<"$SCENARIOS") ))
secs=$(awk -v n=$((per_round * RUNS)) -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print int(n * (d + w + 1) / 60 + 0.5) }') # wrk's durations in s
echo "measuring: $RUNS round(s) × ${#TARGETS[@]} targets × $(wc -w <<<"$SCENARIOS") scenarios, about $secs min" >&2
declare -A RPS P50 P99 CPU ERR OTLP_CPU SENT
RAW=$WORK/raw.tsv
printf 'round\tscenario\ttarget\treq_s\tp50_ms\tp99_ms\tcpu_s_per_100k\terrors\totlp_receiver_cpu_s_per_100k\n' >"$RAW"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg) STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((r = 1; r <= RUNS; r++)); do
  # rotate the order of the targets every round, so none always runs first or last
  n=${#TARGETS[@]} order=()
  for ((i = 0; i < n; i++)); do order+=("${TARGETS[(i + r - 1) % n]}"); done
  for sc in $SCENARIOS; do
    conns=${sc##*:} path=$(path_for "${sc%%:*}")
    for target in "${order[@]}"; do
      url="http://$(addr_of "$target")$path"
      out=$(wrk -t"$THREADS" -c"$conns" -d"$WARMUP" "$url")
      SENT[$target]=$((${SENT[$target]:-0} + $(awk '/requests in/ {print $1}' <<<"$out"))) # requests sent, warm-ups included
      read -ra pids <<<"$(pids_of "$target")"
      before=$(cpu_ticks "${pids[@]}") obefore=$([ -z "$TRACED" ] || cpu_ticks "$OTLP_PID")
      out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "$url")
      after=$(cpu_ticks "${pids[@]}") oafter=$([ -z "$TRACED" ] || cpu_ticks "$OTLP_PID")
      k="$r/$sc/$target"
      reqs=$(awk '/requests in/ {print $1}' <<<"$out")
      SENT[$target]=$((${SENT[$target]} + reqs))
      OTLP_CPU[$k]=-
      [[ $target != slugway-trace* ]] ||
        OTLP_CPU[$k]=$(awk -v d=$((oafter - obefore)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", n ? d / hz / n * 100000 : 0 }')
      RPS[$k]=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
      P50[$k]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
      P99[$k]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
      CPU[$k]=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", n ? d / hz / n * 100000 : 0 }')
      ERR[$k]=$(awk '/Socket errors/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $NF} END {print e + 0}' <<<"$out")
      [ "${ERR[$k]}" = 0 ] || echo "warning: $target answered ${ERR[$k]} errors in $sc:"$'\n'"$out" >&2
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$sc" "$target" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${CPU[$k]}" "${ERR[$k]}" "${OTLP_CPU[$k]}" >>"$RAW"
      echo "round $r/$RUNS $sc $target: ${RPS[$k]} req/s, p99 ${P99[$k]} ms, ${CPU[$k]} CPU s/100k req$([ "${OTLP_CPU[$k]}" = - ] || echo " (+ ${OTLP_CPU[$k]} the OTLP receiver's)"), load $(cut -d' ' -f1 /proc/loadavg)" >&2
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$TRACED" ]; then
  sleep 3 # the exporters send what they hold within their 1 s batch timeout
  SPANS=$(curl -sf "http://$OTLP_STATS/spans") || { echo "cannot read the OTLP receiver's counts" >&2; exit 1; }
fi

report() {
  local rev dirty vers sc t k nk vals
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo "(not a git checkout)")
  dirty=$(git diff --quiet HEAD -- . 2>/dev/null || echo " + uncommitted changes")
  vers="nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///' || true)"
  [[ " $PEERS " != *" haproxy "* ]] || vers+=", HAProxy $("$HAPROXY_BIN" -v 2>&1 | awk 'NR == 1 {print $3}' || true)"
  [[ " $PEERS " != *" caddy "* ]] || vers+=", Caddy $(caddy version 2>&1 | awk '{print $1}' || true)"
  vers+=", $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}' || true)" # wrk -v exits 1
  echo "\`$(env | grep -E '^(MODE|RUNS|BASELINE|BASELINE2|SCENARIOS|PEERS|DURATION|WARMUP|THREADS|SLUGWAY_ENV|BASELINE_ENV|TRACE_LOW_SAMPLING)=' | grep -v '^MODE=proxies$' | sort | tr '\n' ' ' || true)hack/bench-proxy.sh\`"
  echo
  echo "slugway $rev$dirty$(for b in "${BASELINES[@]}"; do echo -n ", $b $(git rev-parse --short "${BREV[$b]}")"; done); $vers."
  echo "wrk -t$THREADS -d$DURATION (warm-up $WARMUP), $RUNS round(s), target order rotated each round; $(nproc) cores; started $STARTED, load average $LOAD_START at the start, $LOAD_END at the end."
  [ "$MODE" = proxies ] || echo "make-run: the proxy hack/run started (its own session, like a terminal); by-hand: a second slugway proxy, same flags, same apiserver, its own session; direct: skeleton-svc itself."
  echo "Figures are medians over the rounds; each ratio is the median of the per-round ratios to nginx in the same round. CPU: user+sys seconds per 100k requests of the target's processes (for direct: the origin's)."
  echo
  local h='| scenario | target | req/s | p50 ms | p99 ms | CPU s/100k | errors | req/s÷nginx | p99÷nginx | CPU÷nginx |' sep='|---|---|---:|---:|---:|---:|---:|---:|---:|---:|'
  [ "$RUNS" = 1 ] || { h+=' req/s÷nginx per round |'; sep+='---|'; }
  echo "$h"; echo "$sep"
  for sc in $SCENARIOS; do
    for t in "${TARGETS[@]}"; do
      local rr=() rp=() rc=() per="" e=0
      for ((r = 1; r <= RUNS; r++)); do
        k="$r/$sc/$t" nk="$r/$sc/nginx"
        rr+=("$(awk -v a="${RPS[$k]}" -v b="${RPS[$nk]}" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
        rp+=("$(awk -v a="${P99[$k]}" -v b="${P99[$nk]}" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
        rc+=("$(awk -v a="${CPU[$k]}" -v b="${CPU[$nk]}" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
        per+="${rr[-1]} " e=$((e + ${ERR[$k]}))
      done
      printf '| %s | %s | %.0f | %.2f | %.2f | %.2f | %d | %.2f | %.2f | %s |' "$sc" "$t" "$(med_of RPS "$sc" "$t")" "$(med_of P50 "$sc" "$t")" \
        "$(med_of P99 "$sc" "$t")" "$(med_of CPU "$sc" "$t")" "$e" \
        "$(median <<<"${rr[*]}")" "$(median <<<"${rp[*]}")" "$([ "$t" = direct ] && echo - || printf '%.2f' "$(median <<<"${rc[*]}")")"
      [ "$RUNS" = 1 ] && echo || echo " ${per% } |"
    done
  done
  local bt
  for bt in "${BASELINES[@]}"; do
    echo
    echo "slugway against $bt ($(git rev-parse --short "${BREV[$bt]}"); median of the per-round ratios):"
    echo
    echo "| scenario | req/s slugway÷$bt | p99 slugway÷$bt | CPU slugway÷$bt |"
    echo "|---|---:|---:|---:|"
    for sc in $SCENARIOS; do
      local a=() b=() c=()
      for ((r = 1; r <= RUNS; r++)); do
        a+=("$(awk -v x="${RPS[$r/$sc/slugway]}" -v y="${RPS[$r/$sc/$bt]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
        b+=("$(awk -v x="${P99[$r/$sc/slugway]}" -v y="${P99[$r/$sc/$bt]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
        c+=("$(awk -v x="${CPU[$r/$sc/slugway]}" -v y="${CPU[$r/$sc/$bt]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
      done
      printf '| %s | %.2f | %.2f | %.2f |\n' "$sc" "$(median <<<"${a[*]}")" "$(median <<<"${b[*]}")" "$(median <<<"${c[*]}")"
    done
  done
  if [ -n "$TRACED" ]; then
    echo
    echo "Tracing cost: each target ÷ slugway (tracing off) in the same round, median of the per-round ratios. slugway-trace: --trace-sampling 1; slugway-trace-low: --trace-sampling $TRACE_LOW_SAMPLING; both export over OTLP gRPC to hack/benchotlp on loopback, whose CPU (same 2 cores) is not in the target's but in the last column."
    echo
    echo "| scenario | target | req/s÷slugway | p99÷slugway | CPU÷slugway | OTLP receiver CPU s/100k |"
    echo "|---|---|---:|---:|---:|---:|"
    for sc in $SCENARIOS; do
      for t in $TRACED; do
        local a=() b=() c=()
        for ((r = 1; r <= RUNS; r++)); do
          a+=("$(awk -v x="${RPS[$r/$sc/$t]}" -v y="${RPS[$r/$sc/slugway]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
          b+=("$(awk -v x="${P99[$r/$sc/$t]}" -v y="${P99[$r/$sc/slugway]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
          c+=("$(awk -v x="${CPU[$r/$sc/$t]}" -v y="${CPU[$r/$sc/slugway]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
        done
        printf '| %s | %s | %.2f | %.2f | %.2f | %.2f |\n' "$sc" "$t" "$(median <<<"${a[*]}")" "$(median <<<"${b[*]}")" "$(median <<<"${c[*]}")" "$(med_of OTLP_CPU "$sc" "$t")"
      done
    done
    echo
    echo "Spans the OTLP receiver got, for the requests wrk completed (warm-ups included; a few readiness checks, and requests in flight when wrk stopped, come on top):"
    echo
    for t in $TRACED; do
      awk -v t="$t" -v sent="${SENT[$t]}" '$1 == t { n = $3 } END { printf "- %s: %d spans for %d requests, %.4f per request\n", t, n, sent, sent ? n / sent : 0 }' <<<"$SPANS"
    done
  fi
  local goal=slugway
  [ "$MODE" = proxies ] || goal=make-run
  for sc in small:64 small:16; do
    [[ " $SCENARIOS " == *" $sc "* ]] || continue
    local a=() b=()
    for ((r = 1; r <= RUNS; r++)); do
      a+=("$(awk -v x="${RPS[$r/$sc/$goal]}" -v y="${RPS[$r/$sc/nginx]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
      b+=("$(awk -v x="${P99[$r/$sc/$goal]}" -v y="${P99[$r/$sc/nginx]}" 'BEGIN { printf "%.3f", y ? x / y : 0 }')")
    done
    awk -v sc="$sc" -v g="$goal" -v a="$(median <<<"${a[*]}")" -v b="$(median <<<"${b[*]}")" 'BEGIN {
      printf "\ngoal at %s (%s req/s ≥ 1.00× nginx, p99 ≤ 1.00× nginx): %.2f×, %.2f× → %s\n", sc, g, a, b, (a >= 1 && b <= 1) ? "met" : "not met" }'
  done
}
[ -z "$OUT" ] || cp "$RAW" "${OUT%.md}.tsv"
report | tee ${OUT:+"$OUT"}
[ -z "$OUT" ] || echo "wrote $OUT and ${OUT%.md}.tsv" >&2

if [ -n "${HOLD:-}" ]; then
  echo "holding everything up for ${HOLD}s (scratch directory $WORK)" >&2
  sleep "$HOLD" & wait $! # interruptible: Ctrl-C or SIGTERM ends the hold at once
fi
if [ "$PROFILE" != 0 ]; then
  echo "profiling slugway for ${PROFILE}s under small:64 into $PROFILE_OUT" >&2
  wrk -t"$THREADS" -c64 -d"$((PROFILE + 2))s" "http://$SLUGWAY/bench/hello" >/dev/null &
  curl -s -o "$PROFILE_OUT" "http://$ADMIN/debug/pprof/profile?seconds=$PROFILE"
  wait $!
  cp "$WORK/slugway" "${PROFILE_OUT%.pprof}.bin"
  echo "top: go tool pprof -top ${PROFILE_OUT%.pprof}.bin $PROFILE_OUT" >&2
fi
