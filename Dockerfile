# ams-exporter container image.
#
#   docker build -t ams-exporter .
#   podman build --format docker -t ams-exporter .
#   docker run --rm -p 10267:10267 ams-exporter --demo
#   docker run --rm -p 10267:10267 -v "$PWD/config.yml:/etc/ams-exporter/config.yml:ro" \
#       -e AMS_CLIENT_SECRET ams-exporter
#
# podman and buildah write OCI images by default, and the OCI image format has no HEALTHCHECK:
# without --format docker they drop it (with a warning).
#
# Behind a proxy that re-signs TLS, or with a private package index, only the build stage needs
# to know (see docs/deployment.md):
#
#   docker build --build-arg PIP_INDEX_URL=https://pypi.example.com/simple \
#       --secret id=pip_ca,src=corporate-ca.pem -t ams-exporter .
#
# The image runs as a numeric non-root user and writes nothing outside /tmp, so it works with a
# read-only root filesystem as long as /tmp is writable (a tmpfs or an emptyDir): the --demo
# emulator writes its generated CA there.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# --- build: the wheel, and a virtual environment with it and its dependencies ---------------
FROM ${PYTHON_IMAGE} AS build

# The index pip reads in this stage only: build arguments and secrets of a stage that is not the
# last never reach the image. Credentials go in the pip_netrc secret, not in the URL: a build
# argument stays in the build cache.
ARG PIP_INDEX_URL=https://pypi.org/simple

# What the wheel records for --version and ams_exporter_build_info (setup.py): the build context
# has no .git, so `--build-arg REVISION=$(git rev-parse HEAD)` names the commit (else "unknown");
# SOURCE_DATE_EPOCH, when given, is the build date instead of now.
ARG REVISION=unknown
ARG AMS_EXPORTER_REVISION=${REVISION}
ARG SOURCE_DATE_EPOCH
# The version is the package's (exporter/__init__.py); this file writes none. `--build-arg VERSION`
# only labels the image (below), and a VERSION that is not the package's fails the build.
ARG VERSION

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY exporter ./exporter
COPY ams_emulator ./ams_emulator

# The wheel, not the source tree, goes into the venv: what ships is what `pip install` of a
# release would give, package data included; the bcrypt extra lets --web.config.file use
# basic_auth_users. The venv has no pip of its own: this stage's pip installs into it.
# The secrets are optional files, mounted for this RUN only: pip_ca, the CA bundle (PEM) pip then
# trusts, and pip_netrc, a netrc with the index's credentials.
RUN --mount=type=secret,id=pip_ca \
    --mount=type=secret,id=pip_netrc,target=/root/.netrc \
    package="$(python -c 'import exporter; print(exporter.__version__)')" \
    && if [ -n "${VERSION}" ] && [ "${VERSION}" != "${package}" ]; then \
         echo "--build-arg VERSION=${VERSION} is not the package's version, ${package}" >&2; \
         exit 1; \
       fi \
    && if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/ams-exporter \
    && python -m pip --python /opt/ams-exporter/bin/python install --no-cache-dir \
       "$(echo /wheels/ams_exporter-*.whl)[bcrypt]"

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# A LABEL cannot read the package: the version label is the VERSION build argument, which the
# build stage checked against the package; without it the label says so.
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ams-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Azure Media Services v2 encoding jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ams-exporter/ams-exporter"

# No package installer at run time: the base interpreter's pip (and setuptools and wheel, where
# the base has them) goes, and so do the wheels ensurepip would bring pip back from.
# The account has the same uid/gid as the Kubernetes manifests' securityContext. It is a regular
# account because 10267 is above SYS_UID_MAX, where `useradd --system` warns; --no-log-init keeps
# that uid out of the lastlog and faillog files.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
    && rm -rf "$(python -c 'import ensurepip, pathlib; print(pathlib.Path(ensurepip.__file__).parent / "_bundled")')" \
    && groupadd --gid 10267 ams-exporter \
    && useradd --no-log-init --uid 10267 --gid 10267 --no-create-home --home-dir /nonexistent \
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
