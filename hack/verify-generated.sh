#!/usr/bin/env bash
# Fails when the generated files (CRDs, RBAC, webhook configs, deepcopy, chart CRDs)
# are stale. It regenerates into a scratch copy, never into the working tree.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root"
# Copy the tracked and new (not ignored) files, as they are in the working tree.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && { mkdir -p "$tmp/$(dirname "$f")"; cp -p "$f" "$tmp/$f"; }
done
( cd "$tmp" && make --no-print-directory -s generate manifests >/dev/null )
status=0
for d in api config charts; do
  [ -d "$root/$d" ] || continue
  if ! diff -r -u "$root/$d" "$tmp/$d"; then status=1; fi
done
if [ $status -ne 0 ]; then
  echo "generated files are stale: run 'make generate manifests' and commit the result" >&2
fi
exit $status
