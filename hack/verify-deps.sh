#!/usr/bin/env bash
# Fails when the data plane or the SDK links control-plane code. The proxy
# (./proxy/...) must not import the controller's packages (controllers, webhooks,
# manager, health); the SDK (./sdk/...) links only client code: none of those, and
# not the proxy either. Test-only imports do not count: they are not shipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mod=$(go list -m)
control=(controllers webhooks manager health)
status=0
check() { # check <packages> <forbidden package suffixes...>
  local pkgs=$1
  shift
  local deps
  deps=$(go list -deps "$pkgs")
  for f in "$@"; do
    if grep -qxE "$mod/$f(/.*)?" <<<"$deps"; then
      echo "$pkgs links $mod/$f; see why with: go list -deps -f '{{.ImportPath}}: {{join .Imports \" \"}}' $pkgs | grep '$mod/$f'" >&2
      status=1
    fi
  done
}
check ./proxy/... "${control[@]}"
check ./sdk/... "${control[@]}" proxy
exit $status
