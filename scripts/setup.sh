#!/usr/bin/env bash
# Installs what Parley's build and tests need and generates the test fixtures that are not
# committed. Idempotent and quick when everything is already present; safe to run often
# (`make test` runs it every time).
#
#   - Debian packages: sipp (sip-tester), libopus-dev + pkg-config (Opus codec build),
#     espeak-ng + sox (speech fixture), iproute2 (`ip netns` for the RFC 4475 test),
#     chromium (headless, for the ops page test), kamailio (the fleet test's SIP front),
#     baresip (a real softphone for the first-run test), python3-pip where pip is missing.
#   - .cache/speech/speech_8k_pcmu.wav: synthesized English speech, 8 kHz mono G.711 mu-law
#     WAV, what sipp's rtp_stream sends as payload type 0.
#   - .cache/speech/speech_8k_s16.wav: the same speech as 8 kHz mono 16-bit PCM (a greeting).
#   - .cache/models/: ONNX Runtime and silero_vad.onnx, by scripts/fetch_models.sh.
#   - .cache/python/: Twilio's Python library (pinned, checksum verified), the reference
#     tests/support/twilio_sign.py checks Parley's X-Twilio-Signature code against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
SPEECH_DIR="$CACHE/speech"

say() { printf 'setup: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# --- Debian packages ------------------------------------------------------------------------
PACKAGES=(sip-tester libopus-dev pkg-config espeak-ng sox iproute2 chromium kamailio baresip libcap2-bin)
# pip fetches the VAD assets and Twilio's library from PyPI; Debian's copy only where no python3
# with pip is on PATH already (a pyenv or a venv has its own).
if ! python3 -m pip --version >/dev/null 2>&1; then
    PACKAGES+=(python3-pip)
fi

install_packages() {
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        say "not a Debian-like system (no dpkg/apt-get); skipping package installation"
        return 0
    fi
    local missing=()
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "packages present: ${PACKAGES[*]}"
        return 0
    fi
    say "installing missing packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    say "installed: ${missing[*]}"
    quiet_kamailio
}

# Debian's kamailio package enables and starts its own service on port 5060 of every interface.
# The tests only need the binary (they start Kamailio themselves on free ports), and a system
# Kamailio would take the port `make run` serves SIP on.
quiet_kamailio() {
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet kamailio 2>/dev/null; then
        as_root systemctl disable --now kamailio >/dev/null 2>&1 &&
            say "disabled the kamailio system service (Parley's tests start their own)"
    fi
}

# --- speech fixture -------------------------------------------------------------------------
SPEECH_TEXT="Hello, this is a test call to Parley. The quick brown fox jumps over the lazy dog."
# Bump when the text or the recipe changes: a fixture made by another recipe is regenerated.
SPEECH_RECIPE="v1 espeak-ng en-us 165wpm norm-3 | $SPEECH_TEXT"

# Generates into a temporary directory and renames on success, so an interrupted run never
# leaves a truncated fixture behind that later runs would trust.
generate_speech() {
    local pcmu="$SPEECH_DIR/speech_8k_pcmu.wav"
    local s16="$SPEECH_DIR/speech_8k_s16.wav"
    local stamp="$SPEECH_DIR/.recipe"
    if [ -s "$pcmu" ] && [ -s "$s16" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SPEECH_RECIPE" ]; then
        say "speech fixture present: $pcmu ($(soxi -D "$pcmu" 2>/dev/null || echo '?') s)"
        return 0
    fi
    local tool
    for tool in espeak-ng sox soxi; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            say "cannot generate the speech fixture: $tool is missing (tests that need it skip, or fail under CI)" >&2
            return 0
        fi
    done
    mkdir -p "$SPEECH_DIR"
    local tmp
    tmp="$(mktemp -d "$SPEECH_DIR/.tmp.XXXXXX")"
    # espeak-ng writes 22.05 kHz mono 16-bit; 165 words per minute gives about 5.7 s here.
    espeak-ng -v en-us -s 165 -w "$tmp/raw.wav" "$SPEECH_TEXT"
    # 8 kHz mono 16-bit PCM (the greeting format), normalized to -3 dBFS so it is clearly
    # non-silent after G.711 round trips.
    sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$tmp/s16.wav" norm -3
    # 8 kHz mono G.711 mu-law WAV (format tag 7): what sipp's rtp_stream wants for PT 0.
    sox "$tmp/s16.wav" -r 8000 -c 1 -e mu-law "$tmp/pcmu.wav"
    mv -f "$tmp/s16.wav" "$s16"
    mv -f "$tmp/pcmu.wav" "$pcmu"
    rm -rf "$tmp"
    printf '%s' "$SPEECH_RECIPE" >"$stamp"
    say "generated $pcmu ($(soxi -D "$pcmu") s, $(soxi -e "$pcmu"))"
    say "generated $s16 ($(soxi -D "$s16") s, $(soxi -e "$s16"))"
}

# --- Twilio's Python library ---------------------------------------------------------------
# Installed with `pip install --target` into .cache/python rather than into a venv, because
# python3-venv is not on every Debian machine, and rather than system-wide, which would need
# root. tests/support/twilio_sign.py puts .cache/python on sys.path itself, so tests run it as
# plain `python3 tests/support/twilio_sign.py ...` (PYTHONPATH=.cache/python works too).
# --no-deps: twilio.request_validator needs only the standard library; the REST client's
# dependencies (requests, aiohttp, PyJWT) are never imported. The wheel is pure Python, so one
# checksum pins it on every machine and Python 3 version.
TWILIO_PY_VERSION="9.13.0"
TWILIO_PY_WHEEL_SHA256="a73eb7139f47ed0ad934e9cf0a26cd0add6b86e6ca4aec5964624a9ea588c11c"
PYTHON_DIR="$CACHE/python"

# Installs into a temporary directory and renames on success, like the speech fixture, so an
# interrupted install is never taken for a complete one.
install_twilio_python() {
    if [ -d "$PYTHON_DIR/twilio-$TWILIO_PY_VERSION.dist-info" ] &&
        python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import twilio.request_validator' \
            "$PYTHON_DIR" 2>/dev/null; then
        say "twilio $TWILIO_PY_VERSION (Python) present: $PYTHON_DIR"
        return 0
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        say "cannot install the twilio Python package: python3 with pip is missing (the signature cross-check skips, or fails under CI)" >&2
        return 0
    fi
    mkdir -p "$CACHE"
    local tmp
    tmp="$(mktemp -d "$CACHE/.python.XXXXXX")"
    printf 'twilio==%s --hash=sha256:%s\n' "$TWILIO_PY_VERSION" "$TWILIO_PY_WHEEL_SHA256" \
        >"$tmp.requirements.txt"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --no-deps --require-hashes --target "$tmp/lib" -r "$tmp.requirements.txt"
    rm -rf "$PYTHON_DIR"
    mv "$tmp/lib" "$PYTHON_DIR"
    rm -rf "$tmp" "$tmp.requirements.txt"
    say "installed twilio $TWILIO_PY_VERSION (Python) into $PYTHON_DIR"
}

install_packages
generate_speech
install_twilio_python
# ONNX Runtime and the Silero VAD model (pinned wheels from PyPI, checksums verified), and
# the reference speech recording from the silero-vad sdist.
"$ROOT/scripts/fetch_models.sh"
say "done"
