# nextpvr-hls-proxy container image (docs/DEPLOYMENT.md).
#
#   docker build -t nextpvr-hls-proxy:0.1.0 .
#   docker run -d --name nextpvr-proxy -p 8080:8080 --env-file deploy/proxy.env \
#     -v "$PWD/deploy/config.docker.yaml:/config/config.yaml:ro" nextpvr-hls-proxy:0.1.0
#
# Needs BuildKit (the default builder since Docker 23) for RUN --mount.

# ---- builder: a wheel of the project and of every runtime dependency ---------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# only what the wheel is built from (.dockerignore keeps tests, caches and .git out)
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy

# `pip wheel .` resolves the project's [project.dependencies] only: no test or dev extras.
# Every runtime dependency ships binary wheels for CPython 3.11 on amd64 and arm64, so no
# compiler is needed here either.
RUN python -m pip wheel --wheel-dir /wheels .

# hls.js for the web page, exactly as package-lock.json pins it (it is never copied into the
# repository); only its minified build and licence reach the runtime image
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev

# ---- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="nextpvr-hls-proxy" \
      org.opencontainers.image.description="HLS and MPEG-TS streaming reverse proxy for NextPVR" \
      org.opencontainers.image.licenses="MIT"

# fixed ids, so files mounted from the host (config, recordings) can be granted to them
ARG APP_UID=10001
ARG APP_GID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PROXY_PORT=8080

RUN groupadd --system --gid "${APP_GID}" nextpvr \
    && useradd --system --uid "${APP_UID}" --gid "${APP_GID}" --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nextpvr \
    && mkdir -p /config

# install from the builder's wheels alone (offline, --no-index): the project and its runtime
# dependencies, nothing else. The bind mount keeps the wheel files out of the image layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/nextpvr_hls_proxy-*.whl

# where proxy/web/page.py looks for hls.js in the image (IMAGE_HLSJS)
COPY --from=builder /src/node_modules/hls.js/dist/hls.min.js /src/node_modules/hls.js/LICENSE \
     /usr/share/nextpvr-hls-proxy/hls.js/

WORKDIR /app
USER ${APP_UID}:${APP_GID}

# the port of deploy/config.docker.yaml (server.port: ${PROXY_PORT:-8080}); the server binds
# server.host, which must be 0.0.0.0 in a container (published ports arrive on eth0)
EXPOSE 8080

# liveness only (is the event loop answering?); /readyz also asks NextPVR, which belongs to an
# orchestrator's readiness probe, not to a restart decision. curl is not in the slim image;
# ProxyHandler({}) ignores any HTTP(S)_PROXY set for the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('PROXY_PORT', '8080'); r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % port, timeout=4); sys.exit(r.status != 200)"]

# SIGTERM: stop accepting, let in-flight segments finish (server.shutdown_grace), give every
# tuner back to NextPVR, log out, exit 0. Give `docker stop` more than the grace: -t 30.
STOPSIGNAL SIGTERM

ENTRYPOINT ["nextpvr-proxy"]
CMD ["serve", "--config", "/config/config.yaml"]
