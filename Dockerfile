# Parley: one binary, `parley`. Multi-stage build: compile on the Rust image, run on slim
# Debian with only what the binary needs at run time.
#
#   docker build -t parley .
#   docker run --rm --network host parley                 # SIP 5060 UDP/TCP, HTTP 8080
#   docker run --rm -v $PWD/parley.toml:/etc/parley/parley.toml parley serve --config /etc/parley/parley.toml
#
# Media (RTP) uses UDP ports media.rtp_ports (default 20000-29999). Publishing that many
# ports through Docker's proxy is slow; prefer --network host, or publish a small range
# (e.g. -p 20000-20199:20000-20199/udp with PARLEY_MEDIA_RTP_PORTS=20000-20199) and set
# sip.external_ip to the address callers reach.

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin parley \
    && install -D -m 0755 target/release/parley /out/parley

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates espeak-ng libopus0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system parley \
    && useradd --system --gid parley --home-dir /var/lib/parley --create-home parley

COPY --from=build /out/parley /usr/local/bin/parley

USER parley
WORKDIR /var/lib/parley
ENV PARLEY_DATA_DIR=/var/lib/parley/data \
    PARLEY_SIP_LISTEN=0.0.0.0:5060 \
    PARLEY_HTTP_LISTEN=0.0.0.0:8080

# SIP (UDP and TCP on the same port) and the HTTP control plane (/healthz, /metrics).
EXPOSE 5060/udp 5060/tcp 8080/tcp
# RTP also needs the UDP range of media.rtp_ports (20000-29999 by default). It is not
# EXPOSEd here on purpose: `docker run -P` would publish ten thousand ports. See the note at
# the top for how to run with media.

VOLUME ["/var/lib/parley/data"]

ENTRYPOINT ["parley"]
CMD ["serve"]
