#!/usr/bin/env bash
# The proxy in a pod against nginx in a pod, on the real node of hack/node.sh, each reached
# through kube-proxy's ClusterIP, measured with the same wrk load in the same run. Prints a
# markdown table with nginx as the ratio's base.
#
# What it sets up on the node (hack/node.sh up, unless NODE_REUSE=1):
#   slugway      `helm install` of charts/slugway as users install it (image slugway:dev,
#                1 proxy replica, the chart's resources: no CPU limit), its proxy Service
#   backend      examples/skeleton-svc/deploy.yaml unchanged: 2 pods registering themselves
#   nginx        one pod running Debian's nginx, packed by hack/image (slugway-bench-nginx),
#                with the config hack/bench-proxy.sh gives nginx (upstream keepalive 256,
#                proxy_http_version 1.1, Connection "", X-Forwarded-For, buffering at its
#                default), its upstream block listing the same skeleton-svc pods the proxy
#                routes to; the proxy pod's resources and security context; its own
#                ClusterIP Service
# wrk runs on the host: the node routes the service range to its bridge, and kube-proxy's
# nat OUTPUT rules send each ClusterIP to its pod. Path /skeleton-svc/hello (a 19-byte body).
# Targets alternate within each round and their order rotates every round. CPU s/100k is
# the user+sys time of the target pod's processes (its container's task and descendants).
#
#   hack/bench-node.sh                         # 1 round, 10s per measurement, 64 and 16 connections
#   RUNS=3 DURATION=10s CONNS="64 16" hack/bench-node.sh
#   DURATION=5s RUNS=1 CONNS=64 hack/bench-node.sh   # a quick look
#   NODE_REUSE=1 hack/bench-node.sh            # on a node already up (make cluster); leaves the
#                                              # node up, removes only what it created
#   OUT=/tmp/bench-node.md ...                 # also write the table there
#
# Needs root (the node), wrk and nginx (Debian's wrk and nginx-light, installed when
# missing), the binaries hack/controlplane.sh builds. Takes /run/slugway-node.lock, as the
# node suite does: one node per machine. Every exit (Ctrl-C included) removes what it made
# and takes the node down (unless NODE_REUSE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
RUNS=${RUNS:-1}
CONNS=${CONNS:-64 16}
OUT=${OUT:-}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
bin=${KUBEBUILDER_ASSETS:-$root/bin/k8s-$K8S_VERSION}
D=${NODE_DIR:-/var/lib/slugway-node}
export KUBECONFIG=$D/admin.kubeconfig
NS=slugway-system RELEASE=slugway NGINX=slugway-bench-nginx
PATH_=/skeleton-svc/hello
CLK_TCK=$(getconf CLK_TCK)

die() { printf 'bench-node: %s\n' "$*" >&2; exit 1; }
log() { printf '[bench-node] %s\n' "$*" >&2; }
kc() { "$bin/kubectl" "$@"; }

# ---------- prerequisites: each missing one says what to do ----------
[ "$(id -u)" -eq 0 ] || die "needs root: the node (containerd, runc, the bridge, iptables). Run it as root, e.g. sudo $0"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive integer"
for c in $CONNS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS=\"$CONNS\": want connection counts, e.g. \"64 16\""; done
for b in kubectl helm kubelet kube-proxy kube-scheduler kube-apiserver etcd; do
  [ -x "$bin/$b" ] || die "no $bin/$b: run hack/controlplane.sh (make controlplane) first"
done
command -v go >/dev/null || die "go not found: hack/image builds the images with it"
command -v ldd >/dev/null || die "ldd not found (Debian's libc-bin): hack/image packs nginx's libraries with it"
command -v flock >/dev/null || die "flock not found (Debian's util-linux)"
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  apt-get update -qq || die "apt-get update failed: install ${need[*]} by hand"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || die "could not install ${need[*]}"
fi
[ -x /usr/sbin/nginx ] || die "/usr/sbin/nginx missing after installing nginx-light"

# One node per machine: the bridge, its addresses and the iptables rules are global. The
# lock's descriptor is closed for everything started below, so no daemon inherits it.
exec 9>/run/slugway-node.lock
if ! flock -n 9; then
  log "another node (suite or benchmark) holds /run/slugway-node.lock; waiting for it"
  flock 9
fi
if [ "${NODE_REUSE:-}" != 1 ] && [ -d "$D/pids" ] && [ -n "$(ls -A "$D/pids" 2>/dev/null)" ]; then
  log "note: $D/pids is not empty; hack/node.sh up checks whether those processes still run"
fi

WORK=$(mktemp -d /tmp/slugway-bench-node.XXXXXX)
NODE_STARTED=false CREATED=false
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if $NODE_STARTED; then
    log "taking the node down (hack/node.sh down)"
    "$root/hack/node.sh" down 9>&- >&2
  elif [ "${NODE_REUSE:-}" = 1 ] && $CREATED; then
    log "removing what this run created from the node"
    kc delete deployment,service,configmap "$NGINX" -n default --ignore-not-found --wait=false >/dev/null 2>&1
    kc delete -f "$root/examples/skeleton-svc/deploy.yaml" --ignore-not-found --wait=false >/dev/null 2>&1
    "$bin/helm" uninstall "$RELEASE" -n "$NS" --wait --timeout 2m >/dev/null 2>&1
  fi
  [ -n "${KEEP:-}" ] && log "kept $WORK" || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------- the node and the images ----------
t0=$(date +%s)
if [ "${NODE_REUSE:-}" = 1 ]; then
  kc get --raw /readyz >/dev/null 2>&1 || die "NODE_REUSE=1 but no node answers at $KUBECONFIG: run make cluster (hack/node.sh up) first"
  "$bin/helm" status "$RELEASE" -n "$NS" >/dev/null 2>&1 && die "release $RELEASE already installed in $NS: uninstall it first (this run removes what it creates)"
  kc get deployment skeleton-svc -n default >/dev/null 2>&1 && die "deployment skeleton-svc already in namespace default: delete it first (kubectl delete -f examples/skeleton-svc/deploy.yaml); this run removes what it creates"
  kc get deployment "$NGINX" -n default >/dev/null 2>&1 && die "deployment $NGINX already in namespace default: delete it first"
else
  NODE_STARTED=true
  "$root/hack/node.sh" up 9>&- >/dev/null || die "hack/node.sh up failed (logs: $D/logs)"
fi
log "building the nginx image (hack/image -only $NGINX) and importing it"
(go run ./hack/image -out "$WORK/images" -tag dev -only "$NGINX") >"$WORK/images.txt" || die "hack/image -only $NGINX failed"
read -r _ nginx_digest nginx_tar <"$WORK/images.txt"
SNAPSHOTTER=overlayfs
grep -qw overlay /proc/filesystems || SNAPSHOTTER=native
ctr --address "$D/containerd/containerd.sock" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$nginx_tar" >/dev/null ||
  die "ctr images import $nginx_tar failed"

# ---------- slugway as users install it, the backend, nginx ----------
log "helm install $RELEASE charts/slugway (image slugway:dev)"
t1=$(date +%s) CREATED=true
"$bin/helm" install "$RELEASE" charts/slugway -n "$NS" --create-namespace \
  --set image.tag=dev --set image.pullPolicy=Never --wait --timeout 3m >/dev/null
kc apply -f examples/skeleton-svc/deploy.yaml >/dev/null
kc rollout status deployment/skeleton-svc -n default --timeout=2m >/dev/null
healthy() { # n: exactly n skeleton-svc Instances, all Healthy
  local s
  s=$(kc get instances -n default -o jsonpath='{range .items[*]}{.status.status}{"\n"}{end}')
  [ "$(grep -c . <<<"$s")" = "$1" ] && ! grep -qv '^Healthy$' <<<"$s"
}
for _ in $(seq 1 450); do healthy 2 && break; sleep 0.2; done
healthy 2 || die "skeleton-svc's 2 Instances did not turn Healthy in 90 s: $(kc get instances -n default 2>&1)"
read -ra backends <<<"$(kc get pods -n default -l app.kubernetes.io/name=skeleton-svc -o jsonpath='{.items[*].status.podIP}')"
[ ${#backends[@]} = 2 ] || die "want 2 skeleton-svc pod IPs, got: ${backends[*]:-none}"
upstream=""
for ip in "${backends[@]}"; do upstream+="server $ip:9311; "; done

kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: $NGINX, namespace: default}
data:
  nginx.conf: |
    worker_processes auto;
    pid /tmp/nginx.pid;
    events { worker_connections 4096; }
    http {
      access_log off;
      upstream origin { ${upstream}keepalive 256; }
      server {
        listen 8080;
        location /skeleton-svc/ {
          proxy_pass http://origin;
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
      }
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $NGINX, namespace: default, labels: {app.kubernetes.io/name: $NGINX}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: $NGINX}}
  template:
    metadata: {labels: {app.kubernetes.io/name: $NGINX}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: nginx
        image: $NGINX:dev
        imagePullPolicy: Never
        args: ["-c", "/etc/nginx-bench/nginx.conf"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}}
        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: ["ALL"]}}
        volumeMounts:
        - {name: conf, mountPath: /etc/nginx-bench}
        - {name: temp, mountPath: /var/lib/nginx}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - {name: conf, configMap: {name: $NGINX}}
      - {name: temp, emptyDir: {}}
      - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: $NGINX, namespace: default}
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: $NGINX}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
kc rollout status deployment/$NGINX -n default --timeout=2m >/dev/null || die "nginx pod not ready: $(kc describe pods -n default -l app.kubernetes.io/name=$NGINX | tail -20)"
log "set up in $(($(date +%s) - t1)) s (helm install, skeleton-svc Healthy, nginx ready)"

svc_addr() { kc get service "$1" -n "$2" -o jsonpath='{.spec.clusterIP}:{.spec.ports[?(@.name=="http")].port}'; }
SLUGWAY_ADDR=$(svc_addr "$RELEASE-proxy" "$NS")
NGINX_ADDR=$(svc_addr "$NGINX" default)
for a in "$SLUGWAY_ADDR" "$NGINX_ADDR"; do
  [[ ${a%:*} =~ ^10\.(9[6-9]|10[0-9]|11[01])\. ]] || die "ClusterIP $a is outside the node's service range 10.96.0.0/12: refusing to send load there"
done
addr_of() { case $1 in slugway) echo "$SLUGWAY_ADDR" ;; nginx) echo "$NGINX_ADDR" ;; esac; }
for t in slugway nginx; do
  ok=false
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$(addr_of $t)$PATH_" || true)" = 200 ] && { ok=true; break; }
    sleep 0.2
  done
  $ok || die "$t at http://$(addr_of $t)$PATH_ did not answer 200 through its ClusterIP"
done

# The host pids of a pod's processes: its container's task (ctr) and that task's descendants.
descendants() { local p c; for p in "$@"; do echo "$p"; for c in $(pgrep -P "$p" || true); do descendants "$c"; done; done; }
pod_pids() { # namespace selector
  local id pid
  id=$(kc get pods -n "$1" -l "$2" -o jsonpath='{.items[0].status.containerStatuses[0].containerID}')
  id=${id#containerd://}
  pid=$(ctr --address "$D/containerd/containerd.sock" -n k8s.io tasks ls | awk -v id="$id" '$1 == id {print $2}')
  [ -n "$pid" ] || die "no task for container $id"
  descendants "$pid" | tr '\n' ' '
}
SLUGWAY_PIDS=$(pod_pids "$NS" "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=proxy")
NGINX_PIDS=$(pod_pids default "app.kubernetes.io/name=$NGINX")
pids_of() { case $1 in slugway) echo "$SLUGWAY_PIDS" ;; nginx) echo "$NGINX_PIDS" ;; esac; }
log "CPU counted over the proxy pod's $(wc -w <<<"$SLUGWAY_PIDS") process(es) and the nginx pod's $(wc -w <<<"$NGINX_PIDS") (master and workers)"
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[++n] = $1 } END { if (!n) print "nan"; else print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) }'; }

# ---------- measure ----------
TARGETS=(slugway nginx)
declare -A RPS P50 P99 CPU ERR
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg) STARTED=$(date -u '+%Y-%m-%d %H:%M UTC') tm=$(date +%s)
for ((r = 1; r <= RUNS; r++)); do
  order=("${TARGETS[@]}")
  ((r % 2)) || order=(nginx slugway) # alternate which goes first
  for c in $CONNS; do
    for t in "${order[@]}"; do
      url="http://$(addr_of "$t")$PATH_"
      wrk -t"$THREADS" -c"$c" -d"$WARMUP" "$url" >/dev/null
      read -ra pids <<<"$(pids_of "$t")"
      before=$(cpu_ticks "${pids[@]}")
      out=$(wrk -t"$THREADS" -c"$c" -d"$DURATION" --latency "$url")
      after=$(cpu_ticks "${pids[@]}")
      k=$r/$c/$t
      reqs=$(awk '/requests in/ {print $1}' <<<"$out")
      RPS[$k]=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
      P50[$k]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
      P99[$k]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
      CPU[$k]=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", n ? d / hz / n * 100000 : 0 }')
      ERR[$k]=$(awk '/Socket errors/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $NF} END {print e + 0}' <<<"$out")
      [ "${ERR[$k]}" = 0 ] || log "warning: $t answered ${ERR[$k]} errors at $c connections:"$'\n'"$out"
      log "round $r/$RUNS ${c} conns $t: ${RPS[$k]} req/s, p50 ${P50[$k]} ms, p99 ${P99[$k]} ms, ${CPU[$k]} CPU s/100k, load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
  local rev dirty c t k
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo "(not a git checkout)")
  dirty=$(git diff --quiet HEAD -- . 2>/dev/null || echo " + uncommitted changes")
  echo "\`$(env | grep -E '^(RUNS|CONNS|DURATION|WARMUP|THREADS|NODE_REUSE)=' | sort | tr '\n' ' ' || true)hack/bench-node.sh\`"
  echo
  echo "slugway $rev$dirty (chart charts/slugway, 1 proxy pod); nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///') from Debian in a pod (image $nginx_digest); $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}' || true)."
  echo "Both through kube-proxy (iptables) ClusterIPs from the host, in front of the same 2 skeleton-svc pods, GET $PATH_; wrk -t$THREADS -d$DURATION (warm-up $WARMUP), $RUNS round(s), order alternated each round; $(nproc) cores; started $STARTED, load average $LOAD_START at the start, $LOAD_END at the end."
  echo
  local h='| connections | target | req/s | p50 ms | p99 ms | CPU s/100k | errors | req/s÷nginx | p99÷nginx | CPU÷nginx |' sep='|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|'
  [ "$RUNS" = 1 ] || { h+=' req/s÷nginx per round |'; sep+='---|'; }
  echo "$h"; echo "$sep"
  for c in $CONNS; do
    for t in "${TARGETS[@]}"; do
      local rr=() rp=() rc=() rps=() p50=() p99=() cpu=() e=0
      for ((r = 1; r <= RUNS; r++)); do
        k=$r/$c/$t n=$r/$c/nginx
        rps+=("${RPS[$k]}") p50+=("${P50[$k]}") p99+=("${P99[$k]}") cpu+=("${CPU[$k]}") e=$((e + ${ERR[$k]}))
        rr+=("$(awk -v a="${RPS[$k]}" -v b="${RPS[$n]}" 'BEGIN { printf "%.3f", b ? a / b : 0 }')")
        rp+=("$(awk -v a="${P99[$k]}" -v b="${P99[$n]}" 'BEGIN { printf "%.3f", b ? a / b : 0 }')")
        rc+=("$(awk -v a="${CPU[$k]}" -v b="${CPU[$n]}" 'BEGIN { printf "%.3f", b ? a / b : 0 }')")
      done
      printf '| %s | %s | %.0f | %.2f | %.2f | %.2f | %d | %.2f | %.2f | %.2f |' "$c" "$t" \
        "$(median <<<"${rps[*]}")" "$(median <<<"${p50[*]}")" "$(median <<<"${p99[*]}")" "$(median <<<"${cpu[*]}")" "$e" \
        "$(median <<<"${rr[*]}")" "$(median <<<"${rp[*]}")" "$(median <<<"${rc[*]}")"
      if [ "$RUNS" = 1 ]; then echo; else printf ' %s |\n' "$(printf '%.2f ' "${rr[@]}" | sed 's/ $//')"; fi
    done
  done
  echo
  echo "Medians over the rounds; each ratio is the median of the per-round ratios to nginx. CPU: user+sys seconds per 100k requests of the pod's processes."
}
report | tee ${OUT:+"$OUT"}
log "measured in $(($(date +%s) - tm)) s; whole run $(($(date +%s) - t0)) s so far (teardown follows)"
