#!/usr/bin/env bash
# `make run`: the release build, the VAD assets on first use, then `parley serve`.
#
# The VAD (ONNX Runtime and the Silero model, pinned and checksummed) is what lets the agent
# hear a caller with an OpenAI-compatible STT and lets a caller interrupt it, so it is fetched
# here rather than left to a separate step. When it cannot be fetched (offline, no pip), the
# fetch says what is missing, what still works and the command that fixes it, and Parley
# serves without it: calls are still answered.
#
#   scripts/run.sh [serve arguments, e.g. --config parley.toml]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"

say() { printf 'run: %s\n' "$*"; }

if ! "$ROOT/scripts/fetch_models.sh" --runtime; then
    say "serving WITHOUT the VAD (see above); fetch it later with: make models"
fi
# Parley's default model paths are the checkout's .cache/models; a cache moved elsewhere is
# named to it (unless the caller already chose the files).
if [ -n "${PARLEY_CACHE_DIR:-}" ]; then
    export PARLEY_MEDIA_ONNXRUNTIME="${PARLEY_MEDIA_ONNXRUNTIME:-$PARLEY_CACHE_DIR/models/libonnxruntime.so.1.22.1}"
    export PARLEY_MEDIA_VAD_MODEL="${PARLEY_MEDIA_VAD_MODEL:-$PARLEY_CACHE_DIR/models/silero_vad.onnx}"
fi
"$CARGO" build --release --bin parley
say "starting parley serve $*"
exec "$ROOT/target/release/parley" serve "$@"
