#!/usr/bin/env bash
# Set up everything (system packages, .venv, test tools) and run lint, types and the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
source scripts/lib.sh
# iproute2: the multi-host discovery test builds network namespaces (when run as root).
# chromium: the dashboard tests drive Debian's Chromium with Playwright.
# ffmpeg: decodes the MJPEG re-stream as a real third-party client.
# motion: baseline (b) of the benchmarks' smoke run.
apt_need iproute2 chromium ffmpeg motion
export CAMSERVER_TEST_OUTPUT="${CAMSERVER_TEST_OUTPUT:-$PWD/test-output}"
echo "== ruff"; .venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest "$@"
