#!/usr/bin/env bash
# Makes sure Debian's chromium is installed for the dashboard's browser test
# (test/dashboard), like hack/controlplane.sh does for the control plane: nothing
# happens when it is already there. Where it cannot be installed (no apt-get, not
# root, no package archive) this says why and exits 0: the test then skips with a
# clear message instead of failing.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }

for name in chromium chromium-browser; do
  if path=$(command -v "$name"); then
    log "found $path ($("$path" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null; then
  log "not installed, and no apt-get here: test/dashboard will skip (install chromium, or set SLUGWAY_CHROMIUM)"
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    log "not installed, and installing needs root: test/dashboard will skip (run: apt-get install chromium)"
    exit 0
  fi
fi
log "installing Debian's chromium package (once)"
if "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  log "installed $(command -v chromium)"
else
  log "apt-get could not install chromium: test/dashboard will skip"
fi
