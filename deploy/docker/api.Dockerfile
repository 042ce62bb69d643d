# syntax=docker/dockerfile:1
# The API service. Build from the repository root (the workspace is the context):
#   docker build -f deploy/docker/api.Dockerfile -t ppodok-api .
# deploy/compose.yaml builds it for you.

# Build stage: the whole workspace (cargo needs every member's manifest), release profile, the
# lock file as committed. The cache mounts keep the registry and target/ between builds.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=ppodok-target \
    cargo build --release --locked -p ppodok-api \
    && install -D -m 0755 target/release/ppodok-api /out/ppodok-api

# Runtime stage: Debian slim (glibc, bash for the health check), no compiler, no package manager
# run. The binary links only libc, libm and libgcc_s; TLS roots are compiled in (rustls).
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 ppodok \
    && useradd --system --uid 10001 --gid ppodok --home-dir /app --create-home --shell /usr/sbin/nologin ppodok
COPY --from=build /out/ppodok-api /usr/local/bin/ppodok-api
COPY services/api/config/production.toml /etc/ppodok/production.toml
# Production overlay: dev login off, JSON logs, binds 0.0.0.0, refuses to start without
# PPODOK__AUTH__JWT_SECRET and a non-default PPODOK__LIVEKIT__API_SECRET.
ENV PPODOK_CONFIG=/etc/ppodok/production.toml
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Liveness over plain bash (no curl in the image): GET /health must answer 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PPODOK__SERVER__PORT:-8080} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM (docker stop) drains in-flight requests for server.shutdown_timeout_secs.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ppodok-api"]
