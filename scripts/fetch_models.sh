#!/usr/bin/env bash
# Fetches the non-code assets of Parley's voice activity detection into the git-ignored cache,
# from PyPI, at pinned versions, checking SHA-256 sums recorded below:
#
#   .cache/models/libonnxruntime.so.1.22.1   ONNX Runtime shared library, taken from the
#                                            onnxruntime 1.22.1 wheel (onnxruntime/capi/)
#   .cache/models/silero_vad.onnx            Silero VAD model, taken from the silero-vad 6.2.3
#                                            wheel (silero_vad/data/)
#   .cache/speech/silero_test_16k.wav        60 s of real human speech, 16 kHz mono 16-bit, taken
#                                            from the silero-vad 6.2.3 sdist (tests/data/test.wav):
#                                            the input of the VAD reference check
#                                            (scripts/vad_reference.py, fixtures/vad/)
#
# With --runtime, only what `parley serve` needs (ONNX Runtime and the model, not the test
# speech): `make run`, `make models` and the container build use that.
#
# PARLEY_CACHE_DIR moves the cache (default: .cache/ in the source tree; the container puts it in
# /opt/parley). pip's own settings apply (PIP_INDEX_URL, PIP_FIND_LINKS, proxies), so a mirror or
# a directory of the pinned archives works as well as PyPI.
#
# Idempotent: when the extracted files are present with the right checksums it only verifies
# them and prints their paths. Downloaded archives are kept in <cache>/models/dl/ so an
# interrupted run resumes without downloading again. Any checksum mismatch is an error (exit 1)
# that names the file, the expected and the actual sum; a bad download is deleted so the next
# run fetches it afresh.
#
# The wheel is chosen by explicit platform tags (CPython 3.11 ABI, manylinux_2_27, this
# machine's architecture) rather than by the local Python, so every machine of one architecture
# downloads the same file and one checksum pins it. The shared library inside does not depend on
# the Python version. Needs python3 with pip (pip is the PyPI client; zip/tar extraction uses
# python3's standard library).
#
# Prints, on success, the two lines to export (the media engine reads these variables):
#   PARLEY_MEDIA_ONNXRUNTIME=<abs path>   PARLEY_MEDIA_VAD_MODEL=<abs path>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PARLEY_CACHE_DIR:-$ROOT/.cache}"
MODELS="$CACHE/models"
SPEECH="$CACHE/speech"
DL="$MODELS/dl"

RUNTIME_ONLY=false
for arg in "$@"; do
    case "$arg" in
        --runtime) RUNTIME_ONLY=true ;;
        *)
            printf 'fetch_models: unknown argument %s (usage: fetch_models.sh [--runtime])\n' "$arg" >&2
            exit 2
            ;;
    esac
done

ORT_VERSION="1.22.1"
SILERO_VERSION="6.2.3"

# --- pinned checksums (SHA-256) ----------------------------------------------------------------
case "$(uname -m)" in
    x86_64 | amd64)
        ORT_PLATFORM="manylinux_2_27_x86_64"
        ORT_WHEEL="onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
        ORT_WHEEL_SHA256="f6effa1299ac549a05c784d50292e3378dbbf010346ded67400193b09ddc2f04"
        ORT_LIB_SHA256="ad9665887025474170d3e71cd28021e7e811c5bf201bc365f953e34a2c4989cc"
        ;;
    aarch64 | arm64)
        ORT_PLATFORM="manylinux_2_27_aarch64"
        ORT_WHEEL="onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl"
        ORT_WHEEL_SHA256="7ae7526cf10f93454beb0f751e78e5cb7619e3b92f9fc3bd51aa6f3b7a8977e5"
        ORT_LIB_SHA256="7b28635814a0810407791b3e26aff9dccf1b4563210baf3b71133231a35c5f2e"
        ;;
    *)
        printf 'fetch_models: no pinned onnxruntime wheel for architecture %s (Linux x86_64 and aarch64 only)\n' \
            "$(uname -m)" >&2
        exit 1
        ;;
esac
SILERO_WHEEL="silero_vad-6.2.3-py3-none-any.whl"
SILERO_WHEEL_SHA256="7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
SILERO_SDIST="silero_vad-6.2.3.tar.gz"
SILERO_SDIST_SHA256="d7a23b09202be4953915cb9173089bb307eed0418a9bd4794d9ec5af07fa1996"
MODEL_SHA256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
SPEECH_SHA256="89f17d9c94c4b31eb320f424628bcbc920abaddbee6e2760fd868bfb1d9a2e47"

ORT_LIB="$MODELS/libonnxruntime.so.$ORT_VERSION"
MODEL="$MODELS/silero_vad.onnx"
SPEECH_WAV="$SPEECH/silero_test_16k.wav"

say() { printf 'fetch_models: %s\n' "$*"; }
die() {
    printf 'fetch_models: ERROR: %s\n' "$*" >&2
    exit 1
}

# Temporary files and directories of this run, removed on any exit: an interrupted or failed
# run leaves only complete, checksummed files behind.
TEMPS=()
# The directories this run may create, deepest first; the ones that are not there yet are
# removed again at the end if they are still empty, and no others.
NEW_DIRS=()
for d in "$DL" "$MODELS" "$SPEECH" "$CACHE"; do
    [ -e "$d" ] || NEW_DIRS+=("$d")
done
cleanup() {
    local t
    for t in "${TEMPS[@]}"; do
        rm -rf "$t"
    done
    for t in "${NEW_DIRS[@]}"; do
        rmdir "$t" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# What a failed download means for the user, and the one command that fixes it.
offline_help() {
    local missing=()
    [ -f "$ORT_LIB" ] || missing+=("$ORT_LIB")
    [ -f "$MODEL" ] || missing+=("$MODEL")
    cat >&2 <<HELP
fetch_models: missing: ${missing[*]:-none of the VAD files (only the test speech)}
fetch_models: without them Parley still answers calls (menu, DTMF, recordings, the API,
  Deepgram's streaming STT), but the voice activity detection is off: an AI agent with an
  OpenAI-compatible STT never hears the caller and barge-in is off.
fetch_models: fix: once PyPI (or a mirror in PIP_INDEX_URL) is reachable, run: make models
HELP
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

# True when $1 exists and has SHA-256 $2.
has_sum() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

# Fails loudly (and deletes the file) when $1 does not have SHA-256 $2.
# An optional third argument names what the file is (for temporary files).
check_sum() {
    local file="$1" want="$2" what="${3:-$1}" got
    got="$(sha256_of "$file")"
    if [ "$got" != "$want" ]; then
        rm -f "$file"
        die "checksum mismatch for $what
    expected sha256 $want
    actual   sha256 $got
  the file was deleted; if the pinned version was changed on purpose, update the sums in $0"
    fi
}

# fetch_archive NAME SHA256 PIP-ARGS...: downloads one archive into $DL with pip unless a copy
# with the right checksum is already there.
fetch_archive() {
    local name="$1" want="$2"
    shift 2
    if has_sum "$DL/$name" "$want"; then
        return 0
    fi
    rm -f "$DL/$name"
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        offline_help
        die "python3 with pip is needed to download $name from PyPI (Debian: apt-get install python3-pip)"
    fi
    mkdir -p "$DL"
    # pip writes into a directory of this run's own; only a complete, checksummed archive is
    # moved into dl/.
    local tmp
    tmp="$(mktemp -d "$DL/.download.XXXXXX")"
    TEMPS+=("$tmp")
    say "downloading $name (pinned, sha256 ${want:0:12}...)"
    if ! python3 -m pip download --disable-pip-version-check --no-deps --progress-bar on \
        --dest "$tmp" "$@" >&2; then
        offline_help
        die "pip could not download $name (is PyPI reachable?)"
    fi
    [ -f "$tmp/$name" ] || die "pip did not produce $name (it wrote: $(ls "$tmp" | tr '\n' ' '))"
    check_sum "$tmp/$name" "$want" "$name (downloaded)"
    mv -f "$tmp/$name" "$DL/$name"
    say "downloaded $name ($(($(stat -c %s "$DL/$name") / 1048576)) MiB)"
}

# extract ARCHIVE MEMBER DEST SHA256: copies one member of a .whl (zip) or .tar.gz to DEST
# through a temporary file, so an interrupted run never leaves a partial file that looks done.
extract() {
    local archive="$1" member="$2" dest="$3" want="$4" tmp
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp "$dest.tmp.XXXXXX")"
    TEMPS+=("$tmp")
    python3 - "$archive" "$member" "$tmp" <<'PY' || die "could not extract $member from $archive"
import shutil, sys, tarfile, zipfile
archive, member, out = sys.argv[1:4]
if archive.endswith(".whl"):
    src = zipfile.ZipFile(archive).open(member)
else:
    src = tarfile.open(archive, "r:gz").extractfile(member)
with src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    check_sum "$tmp" "$want" "$member of $archive (for $dest)"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
    say "extracted $dest"
}

if ! has_sum "$ORT_LIB" "$ORT_LIB_SHA256"; then
    fetch_archive "$ORT_WHEEL" "$ORT_WHEEL_SHA256" --only-binary=:all: --implementation cp \
        --python-version 3.11 --abi cp311 --platform "$ORT_PLATFORM" "onnxruntime==$ORT_VERSION"
    extract "$DL/$ORT_WHEEL" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB" "$ORT_LIB_SHA256"
fi

if ! has_sum "$MODEL" "$MODEL_SHA256"; then
    fetch_archive "$SILERO_WHEEL" "$SILERO_WHEEL_SHA256" --only-binary=:all: "silero-vad==$SILERO_VERSION"
    extract "$DL/$SILERO_WHEEL" "silero_vad/data/silero_vad.onnx" "$MODEL" "$MODEL_SHA256"
fi

if ! $RUNTIME_ONLY && ! has_sum "$SPEECH_WAV" "$SPEECH_SHA256"; then
    fetch_archive "$SILERO_SDIST" "$SILERO_SDIST_SHA256" --no-binary=:all: "silero-vad==$SILERO_VERSION"
    extract "$DL/$SILERO_SDIST" "silero_vad-$SILERO_VERSION/tests/data/test.wav" "$SPEECH_WAV" "$SPEECH_SHA256"
fi

say "onnxruntime $ORT_VERSION: $ORT_LIB"
say "silero-vad $SILERO_VERSION model: $MODEL"
$RUNTIME_ONLY || say "reference speech: $SPEECH_WAV"
printf 'PARLEY_MEDIA_ONNXRUNTIME=%s\n' "$ORT_LIB"
printf 'PARLEY_MEDIA_VAD_MODEL=%s\n' "$MODEL"
