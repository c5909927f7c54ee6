#!/usr/bin/env bash
# Call records off the media path: N media calls (RTP both ways, VAD) on a release Parley,
# first alone, then while 1,000 short calls arrive and each writes its record
# (tests/cdr_load.rs). Prints one JSON line: the tick delays of both windows.
#   scripts/bench_cdrs.sh [MEDIA_CALLS] [RECORDS] [RATE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CDR_LOAD_CALLS="${1:-100}" CDR_LOAD_RECORDS="${2:-1000}" CDR_LOAD_RATE="${3:-200}" \
    cargo test --release --quiet --test cdr_load -- --ignored --nocapture 2>/dev/null \
    | grep '^{"'
