# tfs-gateway container image. Multi-stage: the build stage makes a virtual environment with
# the gateway and its runtime dependencies (no TensorFlow, no test tools); the runtime stage is
# the bare base plus that environment, run as a non-root user.
#
#   podman build --format docker -t tfs-gateway .          (docker build works the same)
#   podman run -p 9000:9000 -p 8080:8080 -p 9100:9100 \
#     -e TFS_GATEWAY_UPSTREAM=tfserving:8500 -v ./gateway.toml:/etc/tfs-gateway/gateway.toml:ro tfs-gateway
#
# BASE must provide python3 (3.11+) with venv; it defaults to the official slim image.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# pip trusts the system's CA bundle (the base's ca-certificates), not only its own.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN python3 -m venv /opt/tfs-gateway \
 && /opt/tfs-gateway/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && find /opt/tfs-gateway -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE}
RUN (getent group tfs-gateway || groupadd --system --gid 10001 tfs-gateway) \
 && (id tfs-gateway || useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tfs-gateway) \
 && mkdir -p /etc/tfs-gateway
COPY --from=build /opt/tfs-gateway /opt/tfs-gateway
COPY deploy/container/gateway.toml /etc/tfs-gateway/gateway.toml
ENV PATH=/opt/tfs-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TFS_GATEWAY_UPSTREAM=tfserving:8500 \
    TFS_GATEWAY_HOST="[::]" \
    TFS_GATEWAY_PORT=9000 \
    TFS_GATEWAY_HTTP_PORT=8080 \
    TFS_GATEWAY_METRICS_PORT=9100
# All interfaces here (a bare `tfs-gateway serve` binds loopback): the container's ports are
# only reachable where they are published.
USER 10001:10001
EXPOSE 9000 8080 9100
# grpc.health.v1 readiness through the product's own CLI (no extra binary in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["tfs-gateway", "health"]
# tfs-gateway handles SIGTERM itself (it is PID 1 here): NOT_SERVING, then drain, then exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tfs-gateway", "serve", "--config", "/etc/tfs-gateway/gateway.toml"]
