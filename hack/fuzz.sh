#!/usr/bin/env bash
# Runs every Go fuzz target in the repo for a bounded time each (FUZZTIME, default 10s),
# after its checked-in seed corpus. go test allows one -fuzz target per run, so we loop.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime="${FUZZTIME:-10s}"
grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bin/' | sort | while read -r f; do
  pkg="./$(dirname "${f#./}")"
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
    echo "fuzz: $pkg $target for $fuzztime"
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime"
  done
done
