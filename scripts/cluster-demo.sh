#!/usr/bin/env bash
# Cluster mode on this machine, loopback only: redis-server, 3 simulated cameras, 3 camserver
# nodes and haproxy in front. Open http://127.0.0.1:8000/ (Ctrl-C stops everything).
#   bash scripts/demo.sh --cluster
# Try: GET /api/cluster to see which node pulls which camera; stop a node (kill <pid>) and
# watch its cameras move to the others while the page keeps playing; start it again with
# the line it prints. The demo runs until Ctrl-C, whichever process ends meanwhile.
# CAMSERVER_DEMO_PORT (default 8000) moves every port: haproxy on it, the nodes on the next
# three, the cameras from +100, Redis on +390.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/lib.sh
apt_need redis-server haproxy curl

base=${CAMSERVER_DEMO_PORT:-8000}
work=$(mktemp -d -t camserver-cluster-XXXX)
touch "$work/pids"
cleanup() {
  trap - EXIT INT TERM
  # shellcheck disable=SC2046 # one pid per line
  kill $(cat "$work/pids") 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started() { echo "$1" >>"$work/pids"; }

redis-server deploy/cluster/redis.conf --port $((base + 390)) --dir "$work" --bind 127.0.0.1 \
  >"$work/redis.log" 2>&1 &
started $!
.venv/bin/camserver sim --count 3 --http-port $((base + 100)) >"$work/sim.log" 2>&1 &
started $!
for i in 1 2 3; do
  # One recordings folder for the three nodes: the camera's holder records, any node plays.
  # Each node's start line is kept as a script, to start it again after stopping it.
  {
    echo "CAMSERVER_REDIS_URL=redis://127.0.0.1:$((base + 390))/0 CAMSERVER_NODE_ID=n$i \\"
    echo "  CAMSERVER_DB='$work/n$i.db' CAMSERVER_RECORDINGS_DIR='$work/recordings' \\"
    echo "  CAMSERVER_DISCOVERY_INTERFACES=lo CAMSERVER_DISCOVERY_LISTEN_PORT=0 \\"
    echo "  CAMSERVER_RTSP_PORT=$((base + 554 + i)) \\"
    echo "  '$PWD/.venv/bin/camserver' serve --host 127.0.0.1 --port $((base + i)) \\"
    echo "  >>'$work/n$i.log' 2>&1 &"
    echo "echo \$! >>'$work/pids'"
    echo "echo \"node n$i: pid \$!\""
  } >"$work/start-n$i.sh"
  bash "$work/start-n$i.sh" >/dev/null
  echo "node n$i: http://127.0.0.1:$((base + i))/ rtsp://127.0.0.1:$((base + 554 + i))/<stream> (pid $(tail -n 1 "$work/pids"), log $work/n$i.log)"
done
CS_BIND=127.0.0.1:$base CS_NODE1=127.0.0.1:$((base + 1)) CS_NODE2=127.0.0.1:$((base + 2)) \
  CS_NODE3=127.0.0.1:$((base + 3)) haproxy -db -f deploy/cluster/haproxy.cfg \
  >"$work/haproxy.log" 2>&1 &
started $!

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$base/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
for i in 1 2 3; do
  port=$((base + 100 + 2 * (i - 1)))
  recording='{"mode": "continuous", "timelapse_interval": 10, "max_age_hours": 24, "max_bytes": 200000000}'
  curl -fs -X POST "http://127.0.0.1:$base/api/streams" -H 'Content-Type: application/json' \
    -d "{\"name\": \"demo-$i\", \"host\": \"127.0.0.1:$port\", \"recording\": $recording}" \
    >/dev/null 2>&1 || true
done
echo
echo "camserver cluster: open http://127.0.0.1:$base/ (haproxy → 3 nodes; Ctrl-C stops it)"
echo "  stop a node:      kill <its pid>    (its cameras move to the others in seconds)"
echo "  start it again:   bash $work/start-n<i>.sh"
echo
# Until Ctrl-C, whichever single process ends meanwhile: a stopped node is the point.
while :; do
  sleep 1
done
