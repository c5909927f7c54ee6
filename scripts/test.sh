#!/usr/bin/env bash
# Runs every test of the workspace (doc tests, then unit, integration and bench targets) and
# ends with one summary line, "tests: N passed, M failed", so that a reader of the log (or
# CI) sees the total of all test binaries rather than the last binary's count.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO="${CARGO:-cargo}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$CARGO" test --workspace --doc 2>&1 | tee -a "$log" || status=1
"$CARGO" test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=1
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
        }
     }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit $status
