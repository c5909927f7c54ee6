#!/usr/bin/env bash
# The container's Rust builds, in the source directory:
#
#   build.sh deps        the dependencies only, in the stubbed workspace (stub_workspace.sh)
#   build.sh parley OUT  Parley itself, installed as OUT/parley
#
# Both are release builds of the `parley` binary with the lock file as it is (--locked).
set -euo pipefail

CARGO="${CARGO:-cargo}"
case "${1:-}" in
    deps)
        "$CARGO" build --release --locked --bin parley
        # The stubs' own artifacts must not be taken for Parley's: cargo compares file times,
        # and the sources copied in next may be older than these builds.
        "$CARGO" clean --release --locked -p parley -p parley-media
        ;;
    parley)
        OUT="${2:?usage: build.sh parley OUT}"
        "$CARGO" build --release --locked --bin parley
        install -D -m 0755 target/release/parley "$OUT/parley"
        echo "build: installed $OUT/parley"
        ;;
    *)
        echo "usage: build.sh deps | build.sh parley OUT" >&2
        exit 2
        ;;
esac
