# curfew in a container. Build: docker build -t curfew .
# Run:   docker run -d --name curfew --stop-timeout 45 -p 127.0.0.1:9716:9716 \
#            -v curfew-data:/var/lib/curfew curfew
# Own config: add -v /etc/curfew/curfew.yaml:/etc/curfew/curfew.yaml:ro (metrics.listen must stay
# 0.0.0.0:9716 for -p and the HEALTHCHECK). --stop-timeout 45: docker's default 10 s would SIGKILL
# the daemon before its 30 s grace period (grace_period) lets in-flight probes finish.
# Details: deploy/systemd/INSTALL.md ("Docker").
# The same image runs the OONI-style test helper:
#   docker run -d --no-healthcheck -p 8765:8765 curfew helper --listen 0.0.0.0:8765
# (--no-healthcheck: the HEALTHCHECK below asks the daemon's /healthz, which a helper does not serve.)
# metrics.listen 0.0.0.0 is the container's own interfaces: publish it on loopback (-p 127.0.0.1:...)
# or put a reverse proxy with authentication in front; see docs/configuration.md ("Docker").

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build curfew's wheel and install it with its dependencies into a venv -------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv is copied as is, so it lives at the same path in both stages (venvs are not relocatable).
RUN python -m venv /opt/curfew
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probe ./probe
# pyproject maps the package probe.migrations to the top-level migrations/ (the Alembic history).
COPY migrations ./migrations
RUN /opt/curfew/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/curfew/bin/pip install /wheels/curfew-*.whl \
    && /opt/curfew/bin/curfew --help >/dev/null

# --- runtime: the venv, a default config, an unprivileged user -----------------------------------
FROM ${PYTHON_IMAGE}
# tzdata: vantage time zones (zoneinfo) are checked when the config loads; ca-certificates: the
# system trust store the TLS probes verify against. Both explicit: newer slim bases may drop them.
# Not pinned (DL3008): both are data that must stay current (zone rules, revoked roots), and a
# pinned Debian version disappears from the mirror at its next security update, breaking the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 curfew \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin curfew \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/curfew
COPY --from=builder /opt/curfew /opt/curfew
# config/docker.yaml is config/curfew.yaml with metrics.listen: 0.0.0.0:9716.
COPY config/docker.yaml /etc/curfew/curfew.yaml

# Where systemd's StateDirectory= would point: the default data_dir (SQLite and the spool).
ENV STATE_DIRECTORY=/var/lib/curfew \
    PATH=/opt/curfew/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/curfew"]
USER 10001:10001
WORKDIR /var/lib/curfew

# Prometheus metrics (/metrics) and the liveness check (/healthz); 8765: `curfew helper`'s default.
EXPOSE 9716 8765
# No curl in slim images: python's urllib; a non-2xx answer or no answer exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9716/healthz', timeout=4)"]
# SIGTERM: drain for grace_period, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["curfew"]
CMD ["run", "--config", "/etc/curfew/curfew.yaml"]
