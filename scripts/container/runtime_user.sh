#!/usr/bin/env bash
# The image's run-time account and the binary's one capability.
#
# Parley runs as the unprivileged user `parley`, owning /var/lib/parley (its data directory).
# The media workers ask for nice -10 (media.worker_nice) so a busy control plane waits rather
# than the audio; that needs CAP_SYS_NICE. The binary carries it as a *permitted* file
# capability only (cap_sys_nice+p, not +ep): the kernel grants it when the container is given
# the capability (`docker run --cap-add SYS_NICE`, compose `cap_add: [SYS_NICE]`) and Parley
# raises it itself; without it the binary still starts and the workers run at the default
# priority with a warning. (+ep would make exec fail outright where the capability is absent.)
#
#   runtime_user.sh BINARY
set -euo pipefail

BINARY="${1:?usage: runtime_user.sh BINARY}"
# A fixed id, so a volume written by one image stays writable by the next (a bind mount from
# the host needs `chown 10001:10001` once).
PARLEY_UID=10001
if ! getent group parley >/dev/null; then
    groupadd --system --gid "$PARLEY_UID" parley
fi
if ! getent passwd parley >/dev/null; then
    useradd --system --uid "$PARLEY_UID" --gid parley --home-dir /var/lib/parley --create-home \
        --shell /usr/sbin/nologin parley
fi
install -d -o parley -g parley /var/lib/parley/data
setcap cap_sys_nice+p "$BINARY"
echo "runtime_user: user parley, $(getcap "$BINARY")"
