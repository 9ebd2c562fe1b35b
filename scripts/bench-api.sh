#!/usr/bin/env bash
# Measures how many jobs per second the HTTP API accepts, on loopback only:
# a release `conveyor api`, a throw-away redis-server (AOF everysec, as the
# tests run it) and wrk (apt-get install -y wrk). Two bounded runs:
#   1. POST /jobs/batch with 100 jobs per request
#   2. POST /jobs, one job per request
# Each runs DURATION seconds (default 10, at most 15) with CONNECTIONS
# concurrent connections (default 64). No worker runs: this is intake alone.
#
#   cargo build --release && bash scripts/bench-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
BIN=${CONVEYOR_BIN:-${CARGO_TARGET_DIR:-target}/release/conveyor}
if [ "$DURATION" -gt 15 ]; then DURATION=15; fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync everysec >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

api_port=$(free_port)
CONVEYOR__REDIS__URL="redis://127.0.0.1:$redis_port" \
CONVEYOR__MYSQL__URL="mysql://conveyor:conveyor@127.0.0.1:1/unused" \
CONVEYOR__REDIS__KEY_PREFIX=bench RUST_LOG=warn \
  "$BIN" api --bind "127.0.0.1:$api_port" >"$work/api.log" 2>&1 &
pids+=($!)
until curl -fs "http://127.0.0.1:$api_port/health" >/dev/null; do sleep 0.1; done

cat >"$work/single.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"noop","payload":{"user":12345,"action":"welcome-email"}}'
LUA
python3 - "$work/batch.lua" <<'PY'
import json, sys
jobs = [{"kind": "noop", "payload": {"user": i, "action": "welcome-email"}} for i in range(100)]
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("wrk.body = %s\n" % json.dumps(json.dumps(jobs)))
PY

run() { # name script jobs-per-request
  redis-cli -p "$redis_port" flushall >/dev/null
  echo "== $1: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$2" \
    "http://127.0.0.1:$api_port/jobs$4" | tee "$work/$1.out"
  local rps pending
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$1.out")
  pending=$(redis-cli -p "$redis_port" llen 'bench:{default}:pending')
  echo "-> $(python3 -c "print(round($rps * $3))") jobs/s accepted ($pending jobs in Redis)"
  echo
}
run batch "$work/batch.lua" 100 /batch
run single "$work/single.lua" 1 ""
