# syntax=docker/dockerfile:1
# camserver: build a wheel, then run it as a non-root user on a slim Python base.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY web ./src/camserver/web
RUN pip install --no-cache-dir --upgrade pip==25.3 \
    && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 camserver \
    && mkdir -p /data && chown camserver /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER camserver
ENV CAMSERVER_HOST=0.0.0.0 \
    CAMSERVER_PORT=8000 \
    CAMSERVER_DB=/data/camserver.db
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["camserver", "serve"]
