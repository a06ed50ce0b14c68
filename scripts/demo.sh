#!/usr/bin/env bash
# Set up camserver and run it with 3 simulated cameras: open http://127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = "--cluster" ]; then  # 3 nodes on Redis behind haproxy instead
  exec bash scripts/cluster-demo.sh
fi
bash scripts/setup.sh
echo
echo "camserver is starting with 3 simulated cameras: open http://127.0.0.1:8000/ (Ctrl-C stops it)"
echo
exec .venv/bin/camserver serve --host 127.0.0.1 --port 8000 --demo 3 "$@"
