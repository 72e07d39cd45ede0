# QuLab server image (see docs/deploy.md).
#
#   docker build -t qulab-server .
#   docker run -p 50051:50051 -p 9464:9464 -e QULAB_AUTH=none qulab-server   # a trial
#
# Three stages: grpc-health-probe built from the pins of the interop tests, the Python
# environment installed by uv from uv.lock, and the runtime: a slim Python with that
# environment and the probe, no compilers, running as an unprivileged user, and needing
# nothing writable but /tmp (so it runs with a read-only root filesystem). Nothing is
# fetched at run time.

FROM golang:1.26-trixie AS probe
WORKDIR /src
# The same go.mod and go.sum pin grpc-health-probe for tests/interop, so the image's probe
# is the one the tests run.
COPY tests/interop/tools/go.mod tests/interop/tools/go.sum ./
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
RUN go build -trimpath -ldflags="-s -w" -o /out/grpc-health-probe \
        github.com/grpc-ecosystem/grpc-health-probe

FROM python:3.11-slim-trixie AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/qulab
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first (a layer that changes only with uv.lock), then the two projects.
COPY pyproject.toml uv.lock README.md ./
COPY clients/python/pyproject.toml clients/python/
RUN uv sync --locked --no-dev --no-install-project --no-install-workspace
# service_config.json: the client package links to the copy all clients share.
COPY clients/service_config.json clients/
COPY clients/python/ clients/python/
COPY server/ server/
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim-trixie
RUN groupadd --system --gid 10001 qulab \
    && useradd --system --uid 10001 --gid qulab --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin qulab
COPY --from=build /opt/qulab /opt/qulab
COPY --from=probe /out/grpc-health-probe /usr/local/bin/grpc-health-probe
# Bytecode is compiled at build time and nothing else is written outside /tmp; HOME points
# there for any library that keeps a cache. QULAB_HOST=0.0.0.0: a container is reached
# from outside, so the server starts only with credentials configured or QULAB_AUTH=none.
ENV PATH=/opt/qulab/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    QULAB_HOST=0.0.0.0
USER 10001:10001
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
# The gRPC health protocol on the server's own port; over TLS when the server speaks TLS,
# presenting the server's certificate as a client one when it requires mTLS (which works
# when the client CA signed it too). A drain or no live worker reads unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "exec grpc-health-probe -addr=127.0.0.1:${QULAB_PORT:-50051} -connect-timeout=3s -rpc-timeout=3s ${QULAB_TLS_CERT_FILE:+-tls -tls-no-verify} ${QULAB_TLS_CLIENT_CA_FILE:+-tls-client-cert=$QULAB_TLS_CERT_FILE -tls-client-key=$QULAB_TLS_KEY_FILE}"]
ENTRYPOINT ["qulab-server"]
