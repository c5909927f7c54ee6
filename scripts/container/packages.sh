#!/usr/bin/env bash
# Installs the Debian packages one stage of the container image needs, and nothing else:
#
#   packages.sh build     the Rust build stage: Opus headers for the codec, pkg-config to find
#                         them, python3-pip to fetch the pinned VAD assets from PyPI
#   packages.sh runtime   the image Parley runs in: the Opus library, espeak-ng (the local
#                         voice), CA certificates (TLS to the providers), setcap (see
#                         runtime_user.sh)
#
# The Dockerfile calls this, and tests/container.rs runs it with PARLEY_APT_SIMULATE=1 (apt's
# own simulation: every package must exist and resolve) so a renamed package fails CI here, not
# a release build. Package lists are removed after installing, to keep the layer small.
set -euo pipefail

case "${1:-}" in
    build) PACKAGES=(libopus-dev pkg-config python3 python3-pip ca-certificates) ;;
    runtime) PACKAGES=(ca-certificates espeak-ng libopus0 libcap2-bin) ;;
    *)
        echo "usage: packages.sh build|runtime" >&2
        exit 2
        ;;
esac

export DEBIAN_FRONTEND=noninteractive
if [ -n "${PARLEY_APT_SIMULATE:-}" ]; then
    # apt knows no package before its first update (a fresh machine, or an image that cleaned
    # its lists): fetch the lists then, as root.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
    fi
    # -s: resolve and print what would be installed, change nothing (works without root).
    apt-get install -s -y --no-install-recommends "${PACKAGES[@]}" >/dev/null
    echo "packages ($1): ${PACKAGES[*]} resolve"
    exit 0
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
rm -rf /var/lib/apt/lists/*
echo "packages ($1): installed ${PACKAGES[*]}"
