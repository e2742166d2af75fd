# syntax=docker/dockerfile:1
# llm-gateway container image: docs/deployment.md ("Container image").
#
#   docker build -t llm-gateway .
#   docker run -p 8080:8080 -v $PWD/config/gateway.yaml:/etc/gateway/gateway.yaml:ro llm-gateway
#
# The routing YAML is read from /etc/gateway/gateway.yaml (mount a file, or a directory at /etc/gateway
# such as a Kubernetes ConfigMap). The image runs as uid 10001, needs no writable root filesystem
# (mount an emptyDir/tmpfs at /tmp), and counts tokens offline: the tiktoken encodings are baked in.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the gateway and its dependencies, plus the tiktoken encodings ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIKTOKEN_CACHE_DIR=/opt/tiktoken
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . && python -m compileall -q /opt/venv
# Tokenizer files. cl100k_base ships with the repository (tests/data/tiktoken, under the file name
# tiktoken gives it in its cache); o200k_base (gpt-4o family) is fetched now if the build has network
# and skipped otherwise: the gateway then estimates those counts (docs/deployment.md).
COPY tests/data/tiktoken/ /opt/tiktoken/
RUN rm -f /opt/tiktoken/README.md \
 && python -c "import tiktoken; tiktoken.get_encoding('cl100k_base'); print('tiktoken: cl100k_base baked in')" \
 && (python -c "import tiktoken; tiktoken.get_encoding('o200k_base'); print('tiktoken: o200k_base baked in')" \
     || echo "tiktoken: o200k_base could not be fetched (offline build); gpt-4o-family counts will be estimates")

# ---- runtime: slim, non-root, no compilers, no pip cache ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tiktoken /opt/tiktoken
COPY config/gateway.yaml /etc/gateway/gateway.yaml
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    TIKTOKEN_CACHE_DIR=/opt/tiktoken \
    GATEWAY_CONFIG=/etc/gateway/gateway.yaml \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
# SIGTERM: stop accepting, finish in-flight requests and streams (server.shutdown_grace), flush.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GATEWAY_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["gateway", "serve"]
CMD ["--config", "/etc/gateway/gateway.yaml"]
