# syntax=docker/dockerfile:1
# camserver image. The build stage runs scripts/setup.sh, the very install step the README's
# commands run (and CI with them), so the image cannot drift from what is tested.
FROM python:3.11-slim AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY src ./src
COPY web ./web
RUN bash scripts/setup.sh

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --user-group camserver \
    && mkdir -p /data /recordings \
    && chown 10001:10001 /data /recordings
COPY --from=build /app /app
USER 10001:10001
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    CAMSERVER_HOST=0.0.0.0 \
    CAMSERVER_PORT=8000 \
    CAMSERVER_DB=/data/camserver.db
VOLUME ["/data"]
EXPOSE 8000 8888/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["camserver", "serve"]
