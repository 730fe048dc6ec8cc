# syntax=docker/dockerfile:1
# Build stage: compile wheels with the build tools; none of them reach the final image.
# The base is pinned to an exact release; bump both stages together.
FROM python:3.11.11-slim-bookworm AS build
# hadolint ignore=DL3008  # the build stage's compilers never reach the image; the base tag pins the release
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY integrations ./integrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: slim, non-root, only the wheels, the runbooks and the migrations.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ONWATCH_SERVER__HOST=0.0.0.0 ONWATCH_SERVER__PORT=8080 ONWATCH_SERVER__JSON_LOGS=true \
    ONWATCH_RUNBOOKS__DIR=/app/runbooks ONWATCH_DATABASE__URL=sqlite:////data/onwatch.db
# uid/gid 10001: the runAsUser/runAsGroup of deploy/kubernetes (tests/test_deploy_manifests.py checks both).
RUN groupadd --system --gid 10001 onwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin onwatch \
    && mkdir -p /data && chown onwatch:onwatch /data
COPY --from=build /wheels /wheels
# hadolint ignore=DL3013  # only the wheels built above (--no-index): their versions are this tree's
RUN pip install --no-cache-dir --no-index --find-links=/wheels onwatch && rm -rf /wheels
WORKDIR /app
COPY migrations ./migrations
COPY runbooks ./runbooks
USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]
# The port is the configured one (ONWATCH_SERVER__PORT), not a constant: change it with -e and this follows.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; port=os.environ.get('ONWATCH_SERVER__PORT') or '8080'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
# Migrations as a one-off: docker run --rm IMAGE migrate
ENTRYPOINT ["onwatch"]
CMD ["serve"]
