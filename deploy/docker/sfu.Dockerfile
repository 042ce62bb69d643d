# syntax=docker/dockerfile:1
# The SFU. Build from the repository root (the workspace is the context):
#   docker build -f deploy/docker/sfu.Dockerfile -t ppodok-sfu .
# deploy/compose.yaml builds it for you.

# Build stage: the whole workspace (cargo needs every member's manifest), release profile, the
# lock file as committed. The cache mounts keep the registry and target/ between builds.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=ppodok-target \
    cargo build --release --locked -p ppodok-sfu \
    && install -D -m 0755 target/release/ppodok-sfu /out/ppodok-sfu

# Runtime stage: Debian slim (glibc, bash for the health check), no compiler, no package manager
# run. The binary links only libc, libm and libgcc_s; TLS roots are compiled in (rustls).
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 ppodok \
    && useradd --system --uid 10001 --gid ppodok --home-dir /app --create-home --shell /usr/sbin/nologin ppodok
COPY --from=build /out/ppodok-sfu /usr/local/bin/ppodok-sfu
WORKDIR /app
USER 10001:10001
# Signalling (WebSocket, /health, /metrics) on TCP; media on the UDP range of
# rtc.udp_port_min..=udp_port_max (one port per PeerConnection), which compose publishes 1:1.
EXPOSE 7880 50000-50999/udp
# Liveness over plain bash (no curl in the image): GET /health must answer 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PPODOK_SFU__PORT:-7880} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ppodok-sfu"]
