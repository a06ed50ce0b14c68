#!/usr/bin/env bash
# Cluster mode on this machine, loopback only: redis-server, 3 simulated cameras, 3 camserver
# nodes and haproxy in front. Open http://127.0.0.1:8000/ (Ctrl-C stops everything).
#   bash scripts/demo.sh --cluster
# Try: GET /api/cluster to see which node pulls which camera; stop a node (kill <pid>) and
# watch its cameras move to the others while the page keeps playing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/lib.sh
apt_need redis-server haproxy curl

work=$(mktemp -d -t camserver-cluster-XXXX)
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis-server deploy/cluster/redis.conf --port 6390 --dir "$work" --bind 127.0.0.1 \
  >"$work/redis.log" 2>&1 &
pids+=($!)
.venv/bin/camserver sim --count 3 --http-port 8100 >"$work/sim.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  # One recordings folder for the three nodes: the camera's holder records, any node plays.
  CAMSERVER_REDIS_URL=redis://127.0.0.1:6390/0 CAMSERVER_NODE_ID="n$i" \
    CAMSERVER_DB="$work/n$i.db" CAMSERVER_RECORDINGS_DIR="$work/recordings" \
    CAMSERVER_DISCOVERY_INTERFACES=lo CAMSERVER_DISCOVERY_LISTEN_PORT=0 \
    .venv/bin/camserver serve --host 127.0.0.1 --port "800$i" >"$work/n$i.log" 2>&1 &
  pids+=($!)
  echo "node n$i: http://127.0.0.1:800$i/ (pid $!, log $work/n$i.log)"
done
CS_BIND=127.0.0.1:8000 CS_NODE1=127.0.0.1:8001 CS_NODE2=127.0.0.1:8002 \
  CS_NODE3=127.0.0.1:8003 haproxy -db -f deploy/cluster/haproxy.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8000/healthz >/dev/null 2>&1 && break
  sleep 0.2
done
for i in 1 2 3; do
  port=$((8100 + 2 * (i - 1)))
  curl -fs -X POST http://127.0.0.1:8000/api/streams -H 'Content-Type: application/json' \
    -d "{\"name\": \"demo-$i\", \"host\": \"127.0.0.1:$port\", \"recording\": {\"mode\": \"continuous\", \"timelapse_interval\": 10, \"max_age_hours\": 24, \"max_bytes\": 200000000}}" >/dev/null 2>&1 || true
done
echo
echo "camserver cluster: open http://127.0.0.1:8000/ (haproxy → 3 nodes; Ctrl-C stops it)"
echo
wait -n "${pids[@]}"
