#!/usr/bin/env bash
# Installs what a real node needs from Debian when it is missing: containerd, runc, the CNI
# plugins (/usr/lib/cni), iptables and nftables. Needs root and apt-get; prints nothing and
# changes nothing when everything is already there.
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins iptables nftables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "node-packages: need root to install ${missing[*]}" >&2; exit 1
fi
command -v apt-get >/dev/null || { echo "node-packages: no apt-get to install ${missing[*]}" >&2; exit 1; }
echo "node-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt run on the machine may hold the locks for a while: wait for it rather than fail
# (DPkg::Lock::Timeout covers dpkg's lock, not the one on the package lists).
apt_retry() {
  local i
  for i in $(seq 60); do
    "$@" && return 0
    sleep 5
  done
  return 1
}
apt_retry apt-get -o DPkg::Lock::Timeout=300 update -qq
# --no-install-recommends: containerd must not pull in a second runtime or start a service
# we did not ask for; policy-rc.d keeps the package's own containerd.service from starting.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_retry apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
