#!/usr/bin/env bash
# Billing lease throughput: 50 concurrent HTTP clients looping reserve -> renew -> release
# against a release Parley, on SQLite and (when PARLEY_TEST_DATABASE_URL is set) PostgreSQL.
#   scripts/bench_leases.sh [SECONDS]
# Prints one JSON line per backend (tests/lease_load.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-10}"
run() {
    LEASE_LOAD_SECONDS="$seconds" LEASE_LOAD_DATABASE_URL="$1" \
        cargo test --release --quiet --test lease_load -- --ignored --nocapture 2>/dev/null \
        | grep '^{"'
}
run ""
if [ -n "${PARLEY_TEST_DATABASE_URL:-}" ]; then
    # A database of its own, so the run leaves nothing in the shared one.
    db="parley_bench_$$"
    psql "$PARLEY_TEST_DATABASE_URL" -qc "CREATE DATABASE $db"
    run "${PARLEY_TEST_DATABASE_URL%/*}/$db"
    psql "$PARLEY_TEST_DATABASE_URL" -qc "DROP DATABASE $db WITH (FORCE)"
fi
