# syntax=docker/dockerfile:1
# Build stage: install the pinned runtime dependencies (requirements.lock: no dev or demo extras,
# so no moto, flask, pytest or mypy in the image) into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY ledger ./ledger
COPY rules ./rules
COPY scanners ./scanners
COPY integrations ./integrations
COPY migrations ./migrations
RUN /opt/venv/bin/pip install --no-deps .

# Runtime stage: the virtualenv only, running as an unprivileged user.
FROM python:3.11-slim
# MALLOC_ARENA_MAX=2: fewer glibc malloc arenas for the scanner's threads (a scan's peak RSS
# at 200 resources of each kind: 152 MB with the default, 148 MB with 2; bench/scan.py).
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2 \
    COMPLIANCEBOT_DATABASE__URL=sqlite:////data/compliancebot.db
RUN useradd --system --uid 10001 --home-dir /data --create-home compliancebot
COPY --from=build /opt/venv /opt/venv
USER compliancebot
WORKDIR /data
VOLUME ["/data"]
# `serve` listens here (set COMPLIANCEBOT_SERVER__HOST=0.0.0.0 in the container); probe /healthz.
EXPOSE 3000
# `compliancebot health` exits non-zero when the database is unreachable or its schema is not the
# one this version needs, and, while `serve` listens on server.port, when /readyz is not ready.
HEALTHCHECK --interval=60s --timeout=10s --start-period=20s --retries=3 \
    CMD ["compliancebot", "health"]
ENTRYPOINT ["compliancebot"]
CMD ["status"]
