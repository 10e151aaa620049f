# ams-exporter container image.
#
#   docker build -t ams-exporter:0.1.0 .
#   docker run --rm -p 10267:10267 ams-exporter:0.1.0 --demo
#   docker run --rm -p 10267:10267 -v "$PWD/config.yml:/etc/ams-exporter/config.yml:ro" \
#       -e AMS_CLIENT_SECRET ams-exporter:0.1.0
#
# The image runs as a numeric non-root user and writes nothing outside /tmp, so it works with a
# read-only root filesystem as long as /tmp is writable (a tmpfs or an emptyDir): the --demo
# emulator writes its generated CA there.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# --- build: the wheel, and a virtual environment with it and its dependencies ---------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
COPY ams_emulator ./ams_emulator

# The wheel, not the source tree, goes into the venv: what ships is what `pip install` of a
# release would give, package data included; the bcrypt extra lets --web.config.file use
# basic_auth_users.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/ams-exporter \
    && /opt/ams-exporter/bin/python -m pip install --no-cache-dir "$(echo /wheels/ams_exporter-*.whl)[bcrypt]"

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ams-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Azure Media Services v2 encoding jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ams-exporter/ams-exporter"

# The same uid/gid as the Kubernetes manifests' securityContext.
RUN groupadd --system --gid 10267 ams-exporter \
    && useradd --system --uid 10267 --gid 10267 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ams-exporter

COPY --from=build /opt/ams-exporter /opt/ams-exporter

# Bytecode was compiled at install time; never try to write it next to read-only sources.
ENV PATH=/opt/ams-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp

USER 10267:10267
WORKDIR /tmp
EXPOSE 10267

# Only the standard library: no curl or wget in a slim image. Set AMS_EXPORTER_HEALTHCHECK_URL
# when --web.listen-address moves the exporter off port 10267.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('AMS_EXPORTER_HEALTHCHECK_URL', 'http://127.0.0.1:10267/healthz'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["ams-exporter"]
CMD ["--config.file=/etc/ams-exporter/config.yml"]
