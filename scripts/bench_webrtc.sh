#!/usr/bin/env bash
# CPU per browser call (WebRTC: ICE, DTLS-SRTP, Opus) and per-turn engine latency of whole
# conversations with zero-delay fake providers: N str0m clients on one thread of the harness
# calling a release Parley over WHIP (tests/webrtc_load.rs), then the same calls without the
# agent (media, SRTP, Opus, VAD; no STT/LLM/TTS) for comparison. The SIP counterpart is
# scripts/bench_agent.sh.
#   scripts/bench_webrtc.sh [CALLS] [SECONDS]
# Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls="${1:-100}"
seconds="${2:-30}"
for mode in ai off; do
    WEBRTC_LOAD_CALLS="$calls" WEBRTC_LOAD_SECONDS="$seconds" WEBRTC_LOAD_MODE="$mode" \
        cargo test --release --quiet --test webrtc_load -- --ignored --nocapture 2>/dev/null \
        | grep '^{"'
done
