# syntax=docker/dockerfile:1
# The Harness ECS delegate (Python): the watcher as PID 1's exec-form entrypoint, which starts and
# supervises the delegate. Build with scripts/build-image (Docker, or buildah where no engine runs).
# Pinned by digest: a rebuild runs on the same base until someone moves the pin on purpose.
# The run-time dependencies are pinned with their hashes (scripts/runtime-lock) and installed
# with --require-hashes: a changed wheel fails the build.
# scripts/build-image passes its own base (made locally where no registry is reachable), also by digest.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---- build: a virtualenv with the pinned run-time dependencies and the two packages -----------
FROM ${BASE_IMAGE} AS build
# Only for TLS-intercepting networks: a CA bundle path lent to the build (never copied to the image).
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY requirements-runtime.lock ./
RUN /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} \
        --only-binary=:all: --no-deps --require-hashes -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY delegate ./delegate
COPY watcher ./watcher
COPY protocol ./protocol
# --no-deps: everything is pinned above; the wheel holds delegate/, watcher/ and protocol/ only
# (no manager, no devstack)
RUN /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --no-deps . \
    && /opt/venv/bin/pip uninstall --yes --quiet pip \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q /opt/venv

# ---- runtime ----------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=1.0.0
ARG WATCHER_VERSION=1.0.0
LABEL org.opencontainers.image.title="harness-delegate" \
      io.harness.delegate.version="${VERSION}" \
      io.harness.watcher.version="${WATCHER_VERSION}" \
      org.opencontainers.image.description="Harness ECS delegate and watcher, re-implemented in Python" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="harness-ecs-delegate" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
RUN groupadd --system --gid 10001 harness \
    && useradd --system --uid 10001 --gid harness --home-dir /opt/harness-delegate \
       --shell /usr/sbin/nologin harness \
    && mkdir -p /opt/harness-delegate \
    && chown harness:harness /opt/harness-delegate
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DELEGATE_WORK_DIR=/opt/harness-delegate \
    DELEGATE_HEALTH_PORT=8080 \
    LOG_FORMAT=json
WORKDIR /opt/harness-delegate
USER 10001:10001
EXPOSE 8080
# No curl in slim images: ask /health with Python. Generous start period for a first registration.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os,sys,urllib.request as u; u.urlopen('http://127.0.0.1:'+os.environ.get('DELEGATE_HEALTH_PORT','8080')+'/health', timeout=4); sys.exit(0)"]
# Exec form: ECS's SIGTERM reaches the watcher (PID 1), which stops the delegate cleanly.
ENTRYPOINT ["harness-watcher"]
