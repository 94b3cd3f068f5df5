# mailwatch container image.
#
#   docker build -t mailwatch .
#   docker run --rm -v "$PWD/mailwatch.toml:/etc/mailwatch/mailwatch.toml:ro" mailwatch config check
#
# Two stages: the builder turns the project and its dependencies into wheels and installs them
# into a virtual environment at /opt/mailwatch; the final image copies only that environment.
# Every dependency ships binary wheels for CPython 3.11 on glibc; the builder has a C compiler for
# mailwatch's own extension only, and the final image has no build tools (pip, setuptools and
# wheel are removed from it too).
#
# Watching a Postfix queue from a container (the "sidecar" model, docs/deployment.md): the
# container needs Postfix's own client `postqueue` (mailwatch runs `postqueue -j`) and `postconf`
# (for queue_directory), so the Debian `postfix` package is installed here *unconfigured*. No
# Postfix daemon ever runs in this image. At run time the MTA's queue directory is mounted
# read-only at /var/spool/postfix and its main.cf at /etc/postfix/main.cf; `postqueue -j` then
# talks to the MTA's showq service through the socket in that shared queue (a Unix socket works
# on a read-only mount). Keep the Postfix version here the same as the MTA's (Debian 12: 3.7).
#
# Reading queue files (each new message's headers) needs the rights of Postfix's mail_owner:
# the queue directories are mode 0700, owned by `postfix`; membership of group postfix or
# postdrop does NOT give read access. So a Postfix sidecar runs as the MTA's postfix uid/gid
# (runAsUser / `user:`), with the queue mounted read-only so it cannot change mail. The default
# user below (10001) is for everything else (mail logs, Exim/IMAP sources later).

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A C compiler in the builder only: mailwatch's two small extensions (the IMAP response and
# header-block readers, setup.py) are compiled into its wheel here; the final stage copies the
# built venv, no compiler.
# (DL3008, apt versions not pinned: see the final stage.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE constraints.txt ./
COPY mailwatch/ mailwatch/

# The dependencies are the exact versions pinned in constraints.txt (generated from a tested
# environment by scripts/freeze-constraints), not whatever is newest on the day of the build.
# The venv is made without pip: the builder's pip installs into it (--python), so no installer
# ends up in the copied environment. --no-index: only the wheels just built, nothing fetched late.
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt . \
 && python -m venv --without-pip /opt/mailwatch \
 && pip --python /opt/mailwatch/bin/python install --no-cache-dir --no-index /wheels/*.whl \
 && /opt/mailwatch/bin/mailwatch --version


FROM python:3.11-slim-bookworm

# Numeric ids of the Postfix accounts, pre-created so the package does not pick its own. They
# must be in Debian's system range (100-999) or the package's maintainer script refuses them.
# Set them to the MTA's ids (`id postfix`; `getent group postdrop`) when watching another MTA
# image; deploy/compose/postfix/Dockerfile uses the same defaults.
ARG POSTFIX_UID=200
ARG POSTFIX_GID=200
ARG POSTDROP_GID=201

LABEL org.opencontainers.image.title="mailwatch" \
      org.opencontainers.image.description="Watches email backlogs and alerts when high-priority mail is stuck" \
      org.opencontainers.image.licenses="MIT"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# DL3008 (pin apt versions) is ignored on purpose: this is Debian stable, which only ships
# security and bug fixes, and drops the superseded version from the archive when a fix lands,
# so an exact pin would break the build at the next point release instead of picking up the
# fix. Rebuild the image regularly (and pin the base image by digest if you need reproducible
# builds).
#
# - The setgid bits of postqueue/postdrop are removed: with no-new-privileges (Kubernetes'
#   allowPrivilegeEscalation: false, compose's security_opt) they would be ignored anyway, and
#   without them postqueue behaves the same everywhere: it reaches showq with the rights of the
#   user it runs as (the postfix uid, or any user in group postdrop while Postfix runs).
# - ssl-cert (a dependency of postfix) generates a snakeoil key pair at install time; nothing
#   here uses it, and a private key has no place in an image.
# hadolint ignore=DL3008
RUN groupadd --system --gid "${POSTFIX_GID}" postfix \
 && groupadd --system --gid "${POSTDROP_GID}" postdrop \
 && useradd --system --uid "${POSTFIX_UID}" --gid postfix --home-dir /var/spool/postfix \
        --no-create-home --shell /usr/sbin/nologin postfix \
 && echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix \
 && rm -rf /var/lib/apt/lists/* \
 && chmod g-s /usr/sbin/postqueue /usr/sbin/postdrop \
 && rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem \
 && python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --gid 10001 mailwatch \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin mailwatch \
 && install -d -m 0755 /etc/mailwatch \
 && install -d -m 2770 -o 10001 -g 10001 /var/lib/mailwatch

COPY --from=builder /opt/mailwatch /opt/mailwatch

# MAILWATCH_HTTP__LISTEN: mailwatch listens on 127.0.0.1:9745 by default, which inside a
# container is the container's own loopback: Prometheus (another container, another pod) could
# never reach it. Listen on every interface of the container's network namespace instead, and
# publish the port deliberately (compose binds it to the host's 127.0.0.1).
# MAILWATCH_STORE__PATH: the default store path is relative to the config file, which is on a
# read-only mount here; the store lives on the /var/lib/mailwatch volume.
# MAILWATCH_CONFIG: the file every command reads without -c, so `docker exec … mailwatch stuck`
# and `… config check` use the mounted file too (it is not a configuration key).
# Environment variables override the config file, so with this image set these two with `-e`,
# not in mailwatch.toml (a file value would be silently overridden).
ENV PATH="/opt/mailwatch/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAILWATCH_HTTP__LISTEN=0.0.0.0:9745 \
    MAILWATCH_STORE__PATH=/var/lib/mailwatch/mailwatch.db \
    MAILWATCH_CONFIG=/etc/mailwatch/mailwatch.toml

USER 10001:10001
WORKDIR /var/lib/mailwatch
VOLUME ["/etc/mailwatch", "/var/lib/mailwatch"]
EXPOSE 9745

# Liveness of the event loop, over loopback, with the Python already in the image (no curl).
# It follows the port of MAILWATCH_HTTP__LISTEN; with [http] TLS configured it cannot connect
# in plain HTTP: override or disable the HEALTHCHECK then. Kubernetes ignores HEALTHCHECK and
# uses the probes in deploy/kubernetes/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('MAILWATCH_HTTP__LISTEN', '127.0.0.1:9745').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["mailwatch"]
CMD ["-c", "/etc/mailwatch/mailwatch.toml", "run"]
