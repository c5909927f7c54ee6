# Parley: one binary, `parley`, with the VAD model inside. Multi-stage build: compile on the
# Rust image, run on slim Debian with only what the binary needs at run time.
#
#   docker build -t parley .
#   docker run --rm --network host --stop-timeout 45 --cap-add SYS_NICE parley
#   docker run --rm --network host --stop-timeout 45 --cap-add SYS_NICE \
#       -v $PWD/parley.toml:/etc/parley/parley.toml parley serve --config /etc/parley/parley.toml
#
# Every build and run-time step below is a script of the project (scripts/container/,
# scripts/fetch_models.sh); tests/container.rs runs them on CI's machine and checks this file
# against them, so what the image does is tested without a Docker daemon.
#
# Stopping: SIGTERM starts the drain (new calls get 503, calls in progress go on for up to
# call.drain_s = 30 s, then BYE and up to 10 s for their records to be written, then 2 s for
# open HTTP streams: 42 s at most). Docker's default stop grace is 10 s, which would cut calls
# on every deploy: give at least call.drain_s + 12 s, rounded up to 45 s on the defaults
# (`docker run --stop-timeout 45`, `docker stop -t 45`, compose `stop_grace_period: 45s`,
# Kubernetes `terminationGracePeriodSeconds: 45`).
#
# Priority: the media workers run at nice -10 (media.worker_nice) so a busy control plane waits
# rather than the audio. That needs CAP_SYS_NICE: `--cap-add SYS_NICE` (compose
# `cap_add: [SYS_NICE]`). Without it Parley runs with a warning, the workers at the default
# priority.
#
# Media (RTP) uses UDP ports media.rtp_ports (default 20000-29999). Publishing that many
# ports through Docker's proxy is slow; prefer --network host, or publish a small range
# (e.g. -p 20000-20199:20000-20199/udp with PARLEY_MEDIA_RTP_PORTS=20000-20199) and set
# sip.external_ip (PARLEY_SIP_EXTERNAL_IP) to the address callers reach.

# Pinned bases: an exact Rust release and an exact Debian point release, so a rebuild next month
# compiles with the same toolchain on the same libraries. Mirrors may add an @sha256 digest.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim

# ---- build ------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src

COPY scripts/container/packages.sh scripts/container/
RUN scripts/container/packages.sh build

# The VAD assets (ONNX Runtime and the Silero model, pinned and checksummed): this layer
# depends only on the fetch script.
COPY scripts/fetch_models.sh scripts/
RUN PARLEY_CACHE_DIR=/opt/parley scripts/fetch_models.sh --runtime

# The dependencies, from the manifests alone: a source edit does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY media/Cargo.toml media/
COPY scripts/container/stub_workspace.sh scripts/container/build.sh scripts/container/
RUN scripts/container/stub_workspace.sh . && scripts/container/build.sh deps

# Parley itself.
COPY . .
RUN scripts/container/build.sh parley /out

# ---- run --------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

# Each script is copied just before the step that runs it, so editing one re-runs only its
# own step and what follows.
COPY scripts/container/packages.sh /usr/local/lib/parley/
RUN /usr/local/lib/parley/packages.sh runtime

COPY --from=build /opt/parley/models/libonnxruntime.so.1.22.1 /opt/parley/models/silero_vad.onnx /opt/parley/models/
COPY --from=build /out/parley /usr/local/bin/parley
COPY scripts/container/runtime_user.sh /usr/local/lib/parley/
RUN /usr/local/lib/parley/runtime_user.sh /usr/local/bin/parley

USER parley
WORKDIR /var/lib/parley
ENV PARLEY_DATA_DIR=/var/lib/parley/data \
    PARLEY_SIP_LISTEN=0.0.0.0:5060 \
    PARLEY_HTTP_LISTEN=0.0.0.0:8080 \
    PARLEY_MEDIA_ONNXRUNTIME=/opt/parley/models/libonnxruntime.so.1.22.1 \
    PARLEY_MEDIA_VAD_MODEL=/opt/parley/models/silero_vad.onnx

# SIP (UDP and TCP on the same port) and the HTTP control plane (/readyz, /metrics, the API).
EXPOSE 5060/udp 5060/tcp 8080/tcp
# RTP also needs the UDP range of media.rtp_ports (20000-29999 by default). It is not
# EXPOSEd here on purpose: `docker run -P` would publish ten thousand ports. See the note at
# the top for how to run with media.

VOLUME ["/var/lib/parley/data"]

# Ready = media workers ticking and the store reachable (GET /readyz on http.listen); a
# draining node reports not ready, which is what it is.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["parley", "healthcheck"]
# SIGTERM drains; see "Stopping" above for the grace period it needs.
STOPSIGNAL SIGTERM

ENTRYPOINT ["parley"]
CMD ["serve"]
