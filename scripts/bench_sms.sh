#!/usr/bin/env bash
# Inbound SMS webhooks on SQLite: signed Twilio webhooks sent open-loop at a fixed rate to a
# release Parley (fake Twilio REST API and fake LLM, both answering at once), first with the
# agent replying to every message, then with replies off (the webhook's own work alone).
#   scripts/bench_sms.sh [SECONDS] [RATE]
# Prints one JSON line per run (tests/sms_load.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-30}"
rate="${2:-200}"
run() {
    SMS_LOAD_SECONDS="$seconds" SMS_LOAD_RATE="$rate" SMS_LOAD_REPLY="$1" \
        cargo test --release --quiet --test sms_load -- --ignored --nocapture 2>/dev/null \
        | grep '^{"'
}
run 1
run 0
