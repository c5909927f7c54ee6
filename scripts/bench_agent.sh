#!/usr/bin/env bash
# CPU per call and per-turn engine latency of whole conversations with zero-delay fake
# providers: N sipp callers talking to a release Parley (tests/agent_load.rs), then the same
# calls without the agent (media, VAD, no STT/LLM/TTS) for comparison.
#   scripts/bench_agent.sh [CALLS] [SECONDS]
# Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls="${1:-50}"
seconds="${2:-30}"
for mode in ai off; do
    AGENT_LOAD_CALLS="$calls" AGENT_LOAD_SECONDS="$seconds" AGENT_LOAD_MODE="$mode" \
        cargo test --release --quiet --test agent_load -- --ignored --nocapture 2>/dev/null \
        | grep '^{"'
done
