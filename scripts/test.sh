#!/usr/bin/env bash
# Set up everything (system packages, .venv, test tools) and run lint, types and the tests.
#
#   bash scripts/test.sh [pytest args]
#   CAMSERVER_TEST_BUSY=2 CAMSERVER_TEST_RUNS=10 bash scripts/test.sh
#       the same, 10 times in a row, while 2 busy loops keep both cores loaded
#
# CAMSERVER_STRICT=1: a skipped test fails the run (every test must run here); the run
# ends with what it checked and the branch coverage, which must reach the floor in
# pyproject.toml ([tool.coverage.report] fail_under).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
source scripts/lib.sh
# iproute2: the multi-host discovery test builds network namespaces (when run as root).
# chromium: the dashboard tests drive Debian's Chromium with Playwright.
# ffmpeg: decodes the MJPEG re-stream as a real third-party client.
# motion: baseline (b) of the benchmarks' smoke run.
# redis-server, redis-sentinel, haproxy: cluster mode runs on real ones (tests/cluster/);
# openssl: a test CA for Redis over TLS (tests/cluster/test_redis_tls.py).
# mosquitto: the MQTT broker of the Home Assistant tests.
# wget, curl: the uptime checks' HEAD requests (tests/test_head.py).
# gcc, libc6-dev: the C relay baseline of bench/peers.py (smoke run), compiled by the bench.
# gstreamer1.0-*: a real RTSP client (tests/test_rtsp.py; Debian builds VLC without live555,
# so its RTSP cannot be tested here: docs/rtsp.md).
apt_need iproute2 chromium ffmpeg motion redis-server redis-sentinel haproxy mosquitto wget curl openssl \
  gcc libc6-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
# nodejs, npm: the Node.js peers of bench/peers.py (smoke run); a Node.js installed some
# other way will do.
command -v node >/dev/null && command -v npm >/dev/null || apt_need nodejs npm
export CAMSERVER_TEST_OUTPUT="${CAMSERVER_TEST_OUTPUT:-$PWD/test-output}"
export CAMSERVER_STRICT=1
echo "== ruff"; .venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "== mypy"; .venv/bin/mypy

busy=()
stop_busy() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; }
trap stop_busy EXIT
for _ in $(seq 1 "${CAMSERVER_TEST_BUSY:-0}"); do
  (while :; do :; done) &
  busy+=($!)
done
[ ${#busy[@]} -eq 0 ] || echo "== ${#busy[@]} busy loop(s) keep the cores loaded"

runs="${CAMSERVER_TEST_RUNS:-1}"
for run in $(seq 1 "$runs"); do
  [ "$runs" -eq 1 ] || echo "== pytest run $run of $runs"
  [ "$runs" -ne 1 ] || echo "== pytest"
  # --durations: the slowest tests, to keep the whole run under 20 minutes on 2 cores.
  .venv/bin/pytest --cov --cov-report=term --durations=25 "$@"
done
