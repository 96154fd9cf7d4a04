#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, with no Docker and no kind:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built by hack/controlplane.sh),
#   containerd with its own socket and state + runc (Debian packages), the kubelet,
#   bridge CNI (cni0, 10.244.0.0/24) and kube-proxy (iptables mode).
# The images (slugway, the examples, the pause image) are built by hack/image and imported,
# since nothing can be pulled.
#
#   hack/node.sh up      bring the node up (installs the Debian packages when missing), print
#                        the KUBECONFIG to use
#   hack/node.sh down    stop exactly what `up` started and restore the host
#   hack/node.sh images  rebuild and import the images (IMAGE_TAG, default dev)
#
# Needs root. Every packet stays on this machine: the apiserver, etcd and every component
# bind to the bridge address; service addresses are routed to cni0 (never out of the default
# route, even while kube-proxy is not running); pod traffic may not leave the bridge
# (FORWARD drop); masquerading stays off. `down` removes those rules and restores
# net.ipv4.ip_forward.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
bin="${KUBEBUILDER_ASSETS:-$root/bin/k8s-$K8S_VERSION}"
D="${NODE_DIR:-/var/lib/slugway-node}"   # all state: certs, etcd, containerd, kubelet, pids
IMAGE_TAG="${IMAGE_TAG:-dev}"
images_dir="${IMAGES_DIR:-$root/bin/images}"

bridge=cni0
bridge_ip=10.244.0.1
pod_cidr=10.244.0.0/24
svc_cidr=10.96.0.0/12
svc_api=10.96.0.1
node_name=slugway-node
sock="$D/containerd/containerd.sock"
export KUBECONFIG="$D/admin.kubeconfig"

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
kc() { "$bin/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
ctr_() { ctr --address "$sock" -n k8s.io "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------- processes: started in the background, pid recorded, stopped by that pid ----------
start_proc() { # name cmd...
  local name="$1"; shift
  "$@" >"$D/logs/$name.log" 2>&1 &
  # The pid and the binary it runs: `down` signals the pid only while it still runs that.
  printf '%s %s\n' "$!" "$(readlink -f "$(command -v "$1")")" >"$D/pids/$name"
}
stop_proc() { # name
  local f="$D/pids/$1" pid exe i
  [ -f "$f" ] || return 0
  read -r pid exe <"$f"
  if ours "$pid" "$exe"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do ours "$pid" "$exe" || break; sleep 0.1; done
    ours "$pid" "$exe" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}

ours() { # pid exe: the pid is alive and runs the binary we started
  [ "$(readlink -f "/proc/$1/exe" 2>/dev/null)" = "$2" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

wait_for() { # seconds description cmd...
  local secs="$1" what="$2" t; shift 2
  t=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$t" ] || die "timed out after ${secs}s waiting for $what (logs: $D/logs)"
    sleep 0.2
  done
}

# ---------- preconditions ----------
preflight() {
  [ "$(id -u)" -eq 0 ] || die "needs root (containerd, runc, the bridge and iptables)"
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || die "no cgroups mounted under /sys/fs/cgroup"
  "$root/hack/node-packages.sh"
  for c in containerd runc ctr iptables ip; do command -v "$c" >/dev/null || die "$c not found"; done
  [ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge not found (containernetworking-plugins)"
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$bin/$b" ] || { "$root/hack/controlplane.sh" >/dev/null; break; }
  done
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$bin/$b" ] || die "$bin/$b missing (hack/controlplane.sh builds it)"
  done
}

# ---------- certificates and kubeconfigs (made once, kept in $D/pki) ----------
pki() {
  local p="$D/pki"
  mkdir -p "$p"
  [ -f "$p/.done" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 3650 \
    -subj "/CN=slugway-node-ca" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  cert() { # name subject [san]
    openssl req -newkey rsa:2048 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "$2" 2>/dev/null
    local ext="$p/$1.ext"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' \
      "$([ -n "${3:-}" ] && echo serverAuth || echo clientAuth)" >"$ext"
    [ -n "${3:-}" ] && echo "subjectAltName=$3" >>"$ext"
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
      -extfile "$ext" -out "$p/$1.crt" 2>/dev/null
    rm -f "$p/$1.csr" "$ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:$bridge_ip,IP:$svc_api,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=admin"
  cert kubelet "/O=system:nodes/CN=system:node:$node_name"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  for n in admin kubelet controller-manager scheduler kube-proxy; do
    cat >"$D/$n.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: slugway-node
  cluster:
    server: https://$bridge_ip:6443
    certificate-authority: $p/ca.crt
users:
- name: $n
  user:
    client-certificate: $p/$n.crt
    client-key: $p/$n.key
contexts:
- name: slugway-node
  context: {cluster: slugway-node, user: $n}
current-context: slugway-node
EOF
  done
  touch "$p/.done"
}

# write_if_changed file: stdin becomes the file's content only when it differs (kube-proxy
# exits when its config file is rewritten with new content).
write_if_changed() {
  local tmp="$1.tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

configs() {
  mkdir -p "$D/cni/net.d" "$D/cni/ipam" "$D/containerd"
  write_if_changed "$D/cni/net.d/10-slugway.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "slugway",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$D/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
  write_if_changed "$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  # The VM lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, so do not ask it to.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The pods' network namespaces under our state, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$SNAPSHOTTER"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
  : >"$D/resolv.conf" # no DNS in pods (there is no CoreDNS); never the host's resolvers
  write_if_changed "$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $bridge_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $bridge_ip
healthzPort: 10248
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
resolvConf: $D/resolv.conf
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization:
  mode: Webhook
# Images cannot be pulled again here: never garbage-collect them, and never evict on the
# disk usage of a shared machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
serializeImagePulls: false
EOF
  write_if_changed "$D/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $D/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $pod_cidr
healthzBindAddress: $bridge_ip:10256
metricsBindAddress: $bridge_ip:10249
hostnameOverride: $node_name
conntrack:
  maxPerCore: 0
iptables:
  masqueradeAll: false
EOF
}

# ---------- the network: every packet stays on this machine ----------
net_up() {
  [ -f "$D/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$D/ip_forward.orig"
  if command -v nft >/dev/null && [ ! -f "$D/nft-tables.orig" ]; then nft list tables >"$D/nft-tables.orig" 2>/dev/null || true; fi
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    touch "$D/bridge.ours"
  fi
  ip addr replace "$bridge_ip/24" dev "$bridge"
  ip link set "$bridge" up
  # Service addresses go to the bridge, never out of the default route.
  ip route replace "$svc_cidr" dev "$bridge" src "$bridge_ip"
  # Pods may not reach anything beyond the bridge (and this host).
  iptables -C FORWARD -i "$bridge" ! -o "$bridge" -j DROP 2>/dev/null ||
    iptables -I FORWARD -i "$bridge" ! -o "$bridge" -j DROP
  # Forwarding between pods on the bridge (a pod reaching a ClusterIP is routed by this host).
  echo 1 >/proc/sys/net/ipv4/ip_forward
}

# kube_chains_down removes every KUBE-* chain (the kubelet's KUBE-FIREWALL and canaries,
# whatever kube-proxy --cleanup left) and the jumps to them, from iptables and ip6tables.
kube_chains_down() {
  local - ipt t c rule
  set +e +o pipefail
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$ipt" -t "$t" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | while read -r rule; do
        # shellcheck disable=SC2086
        eval "$ipt -t $t ${rule/-A /-D }" 2>/dev/null
      done
      for c in $("$ipt" -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do "$ipt" -t "$t" -F "$c" 2>/dev/null; done
      for c in $("$ipt" -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do "$ipt" -t "$t" -X "$c" 2>/dev/null; done
    done
  done
  # Tables iptables-nft created for them, when they were not there before and are empty now.
  if command -v nft >/dev/null && [ -f "$D/nft-tables.orig" ]; then
    nft list tables 2>/dev/null | while read -r _ fam name; do
      grep -qx "table $fam $name" "$D/nft-tables.orig" && continue
      [ -z "$(nft list table "$fam" "$name" 2>/dev/null | grep -vE '^\s*(table|chain|type|policy|\}|$)')" ] &&
        nft delete table "$fam" "$name" 2>/dev/null
    done
    rm -f "$D/nft-tables.orig"
  fi
}

net_down() {
  while iptables -D FORWARD -i "$bridge" ! -o "$bridge" -j DROP 2>/dev/null; do :; done
  ip route del "$svc_cidr" dev "$bridge" 2>/dev/null || true
  if [ -f "$D/bridge.ours" ]; then
    ip link del "$bridge" 2>/dev/null || true
    rm -f "$D/bridge.ours"
  fi
  if [ -f "$D/ip_forward.orig" ]; then
    cat "$D/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
    rm -f "$D/ip_forward.orig"
  fi
}

# ---------- images ----------
PAUSE_REF="slugway-pause:$IMAGE_TAG"
SNAPSHOTTER=overlayfs
grep -qw overlay /proc/filesystems || SNAPSHOTTER=native
build_images() { # [image names, comma-separated]
  local t
  t=$(now)
  (cd "$root" && go run ./hack/image -out "$images_dir" -tag "$IMAGE_TAG" ${1:+-only "$1"}) >"$D/images.txt"
  log "built images in $(since "$t")s: $(cut -f1,2 "$D/images.txt" | tr '\t\n' ' ')"
}
import_images() {
  local t ref digest file
  t=$(now)
  while IFS=$'\t' read -r ref digest file; do
    ctr_ images import --snapshotter "$SNAPSHOTTER" "$file" >/dev/null
  done <"$D/images.txt"
  log "imported images in $(since "$t")s"
}

proxy_rules() { iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q "default/kubernetes:https cluster IP"; }

# ---------- up / down ----------
up() {
  preflight
  mkdir -p "$D/logs" "$D/pids"
  local f pid exe t0 t1 stale=false
  for f in "$D"/pids/*; do
    [ -e "$f" ] || continue
    read -r pid exe <"$f"
    ours "$pid" "$exe" && die "already up ($(basename "$f") is pid $pid); run: $0 down"
    stale=true
  done
  if $stale; then log "a previous run was not taken down: cleaning up first"; (down); fi
  t0=$(now)
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed; taking everything down again"; down; fi' EXIT
  net_up
  pki
  build_images
  configs
  t1=$(now) # the node's own bring-up starts here: from nothing running to Ready

  start_proc etcd "$bin/etcd" --name "$node_name" --data-dir "$D/etcd" \
    --listen-client-urls "http://$bridge_ip:2379" --advertise-client-urls "http://$bridge_ip:2379" \
    --listen-peer-urls "http://$bridge_ip:2380" --initial-advertise-peer-urls "http://$bridge_ip:2380" \
    --initial-cluster "$node_name=http://$bridge_ip:2380" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648
  start_proc containerd containerd --config "$D/containerd/config.toml"

  start_proc kube-apiserver "$bin/kube-apiserver" \
    --bind-address "$bridge_ip" --advertise-address "$bridge_ip" --secure-port 6443 \
    --etcd-servers "http://$bridge_ip:2379" \
    --service-cluster-ip-range "$svc_cidr" \
    --client-ca-file "$D/pki/ca.crt" \
    --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" \
    --kubelet-client-certificate "$D/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$D/pki/apiserver-kubelet-client.key" \
    --service-account-key-file "$D/pki/sa.pub" --service-account-signing-key-file "$D/pki/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false
  wait_for 60 "kube-apiserver /readyz" kc get --raw /readyz
  log "kube-apiserver ready after $(since "$t1")s"

  start_proc kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$D/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$D/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$D/controller-manager.kubeconfig" \
    --bind-address "$bridge_ip" --leader-elect=false \
    --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range "$svc_cidr" \
    --profiling=false
  start_proc kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$D/scheduler.kubeconfig" \
    --authentication-kubeconfig "$D/scheduler.kubeconfig" \
    --authorization-kubeconfig "$D/scheduler.kubeconfig" \
    --bind-address "$bridge_ip" --leader-elect=false --profiling=false

  wait_for 30 "containerd's socket" ctr_ version
  import_images

  start_proc kubelet "$bin/kubelet" --config "$D/kubelet.yaml" --kubeconfig "$D/kubelet.kubeconfig" \
    --root-dir "$D/kubelet" --cert-dir "$D/kubelet/pki" \
    --node-ip "$bridge_ip" --hostname-override "$node_name"
  start_proc kube-proxy "$bin/kube-proxy" --config "$D/kube-proxy.yaml"

  wait_for 90 "node $node_name Ready" kc wait --for=condition=Ready "node/$node_name" --timeout=1s
  log "node Ready after $(since "$t1")s"
  wait_for 60 "the default ServiceAccount" kc get serviceaccount default -n default
  wait_for 30 "kube-proxy's rules for the kubernetes Service" proxy_rules
  # kube-proxy inserted its FORWARD jumps above ours: put the drop first again (kube-proxy
  # only checks that its jumps exist; it does not reorder).
  iptables -D FORWARD -i "$bridge" ! -o "$bridge" -j DROP
  iptables -I FORWARD -i "$bridge" ! -o "$bridge" -j DROP
  trap - EXIT
  log "up: node ready for pods $(since "$t1")s after the first process started; $(since "$t0")s with certificates and images"
  log "export KUBECONFIG=$KUBECONFIG"
  echo "$KUBECONFIG"
}

down() {
  trap - EXIT
  set +e
  [ -d "$D" ] || { log "nothing to take down ($D does not exist)"; return 0; }
  local netns=() id p
  stop_proc kube-proxy
  stop_proc kubelet
  if [ -f "$D/pids/containerd" ] && ctr_ version >/dev/null 2>&1; then
    # The pods' network namespaces, to remove once their tasks are gone.
    for id in $(ctr_ containers ls -q 2>/dev/null); do
      p="$(ctr_ containers info "$id" 2>/dev/null | sed -n 's/.*"path": "\([^"]*\/netns\/[^"]*\)".*/\1/p' | head -1)"
      [ -n "$p" ] && netns+=("$p")
    done
    # Kill and delete every CRI task, so that the shims exit.
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1; done
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      for _ in $(seq 50); do ctr_ tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
    done
  fi
  stop_proc containerd
  stop_proc kube-scheduler
  stop_proc kube-controller-manager
  stop_proc kube-apiserver
  stop_proc etcd
  for p in $(printf '%s\n' "${netns[@]}" | sort -u); do
    umount "$p" 2>/dev/null; rm -f "$p"
  done
  # Whatever is still mounted under our state (pod volumes, rootfs, shm), deepest first.
  findmnt -rn -o TARGET | grep "^$D/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  [ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1
  kube_chains_down
  # The kubelet's pod cgroups (cgroupfs driver).
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  net_down
  # The cluster's state goes too, so that the next `up` starts from nothing (the
  # certificates stay). Never while something is still mounted below it.
  if findmnt -rn -o TARGET | grep -q "^$D/"; then
    log "still mounted under $D, keeping its state: $(findmnt -rn -o TARGET | grep "^$D/" | head -3 | tr '\n' ' ')"
  else
    rm -rf --one-file-system "$D/etcd" "$D/kubelet" "$D/containerd/root" "$D/containerd/state" "$D/cni"
  fi
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  images)
    mkdir -p "$D"
    build_images "${2:-}"
    import_images ;;
  *) echo "usage: $0 up|down|images [names]" >&2; exit 2 ;;
esac
