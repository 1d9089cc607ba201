#!/usr/bin/env bash
# flower_deployment.sh N ROUNDS OUTJSON
#
# Trains fedpool's digits contract on Flower's deployment runtime: one `flower-superlink
# --insecure`, N `flower-supernode --insecure` processes (each with its own IID partition),
# then `flwr run` of flower_app/ against the SuperLink. The ServerApp times each round and
# writes {"system":"flower","nodes":N,"rounds":R,"round_ms":[...],"accuracy":[...]} to
# OUTJSON. Every process started here is killed on exit.
#
# Environment: PYTHON (default python3.11) for the venv, FLWR_BENCH_PORT (default 19100; the
# SuperLink uses it, SuperNode i uses PORT+1+i), FLWR_BENCH_TIMEOUT (seconds, default 1800),
# KEEP_TMP=1 keeps the logs directory.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 N ROUNDS OUTJSON" >&2
  exit 2
fi
N=$1
ROUNDS=$2
OUT=$(realpath -m "$3")

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA="$ROOT/data/digits/digits.csv"
FLWR_VERSION=1.42.0
VENV="$HERE/.venv"
PORT=${FLWR_BENCH_PORT:-19100}
TIMEOUT=${FLWR_BENCH_TIMEOUT:-1800}
MIN_FREE_MIB=${FLWR_BENCH_MIN_FREE_MIB:-1024}

# --- the venv -----------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3.11}" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import flwr; print(flwr.__version__)' 2>/dev/null)" != "$FLWR_VERSION" ] \
  || ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "flwr==$FLWR_VERSION" "numpy>=2.0,<3"
fi
export PATH="$VENV/bin:$PATH"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 PYTHONUNBUFFERED=1

# --- processes, and their cleanup -------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/flower-bench.XXXXXX")
PIDS=()

descendants() { # every process below the given pids (by parent pid), from one ps snapshot
  ps -eo pid=,ppid= | python3 -c '
import sys
roots = [int(p) for p in sys.argv[1:]]
kids = {}
for line in sys.stdin:
    pid, ppid = map(int, line.split())
    kids.setdefault(ppid, []).append(pid)
todo, seen = list(roots), []
while todo:
    for child in kids.get(todo.pop(), []):
        seen.append(child)
        todo.append(child)
print(" ".join(map(str, seen)))' "$@"
}

cleanup() {
  local status=$? all=()
  if [ ${#PIDS[@]} -gt 0 ]; then
    all=($(descendants "${PIDS[@]}") "${PIDS[@]}")
  fi
  if [ ${#all[@]} -gt 0 ]; then
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "${all[@]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  if [ "${KEEP_TMP:-0}" = 1 ] || [ $status -ne 0 ]; then
    echo "flower logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
for p in $(seq "$PORT" $((PORT + N))); do
  port_free "$p" || { echo "port $p is in use (set FLWR_BENCH_PORT)" >&2; exit 1; }
done

wait_port() { # wait until something listens on 127.0.0.1:$1
  for _ in $(seq 300); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.5)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "nothing listens on port $1; see $TMP" >&2
  return 1
}

PEAK_USED_MIB=0
check_memory() { # abort before the OOM killer picks a victim
  local total avail
  total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  if [ $((total - avail)) -gt "$PEAK_USED_MIB" ]; then PEAK_USED_MIB=$((total - avail)); fi
  if [ "$avail" -lt "$MIN_FREE_MIB" ]; then
    echo "flower: aborted at $N supernodes, only ${avail} MiB of memory left" >&2
    exit 3
  fi
}

# The SuperLink (Fleet, Control and ServerAppIo APIs all on one HTTP port in flwr 1.42).
mkdir -p "$TMP/superlink"
FLWR_HOME="$TMP/superlink" flower-superlink --insecure \
  --host 127.0.0.1 --port "$PORT" \
  --disable-runtime-dependency-installation \
  >"$TMP/superlink.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT"

registered() { # how many SuperNodes have registered with the SuperLink
  grep -l "SuperNode ID" "$TMP"/supernode-*.log 2>/dev/null | wc -l
}
wait_registered() { # wait until $1 SuperNodes have registered
  local start
  start=$(date +%s)
  while [ "$(registered)" -lt "$1" ]; do
    check_memory
    if [ $(($(date +%s) - start)) -gt 600 ]; then
      echo "flower: only $(registered) of $1 SuperNodes registered after 600 s; see $TMP" >&2
      exit 1
    fi
    sleep 1
  done
}

# N SuperNodes, each with its own FLWR_HOME (where it installs the app) and Runtime API port,
# started BATCH at a time (default 10): a hundred Python processes starting at once on two
# cores starve the SuperLink until registrations and `flwr run` time out.
BATCH=${FLWR_BENCH_START_BATCH:-10}
for i in $(seq 0 $((N - 1))); do
  mkdir -p "$TMP/supernode-$i"
  FLWR_HOME="$TMP/supernode-$i" flower-supernode --insecure \
    --superlink "127.0.0.1:$PORT" \
    --host 127.0.0.1 --port $((PORT + 1 + i)) \
    --node-config "partition-id=$i num-partitions=$N data-path=\"$DATA\"" \
    >"$TMP/supernode-$i.log" 2>&1 &
  PIDS+=($!)
  check_memory
  if [ $(((i + 1) % BATCH)) = 0 ]; then
    wait_registered $((i + 1))
  fi
done
wait_registered "$N"
echo "flower: $N SuperNodes registered" >&2

# The CLI's SuperLink connection ($FLWR_HOME/config.toml; see flower_app/pyproject.toml).
mkdir -p "$TMP/cli"
cat >"$TMP/cli/config.toml" <<EOF
[superlink]
default = "bench"

[superlink.bench]
address = "127.0.0.1:$PORT"
insecure = true
EOF

rm -f "$OUT"
mkdir -p "$(dirname "$OUT")"
RUN_ID=
for attempt in 1 2 3 4 5; do
  FLWR_HOME="$TMP/cli" flwr run "$HERE/flower_app" bench --format json \
    --run-config "num-nodes=$N num-server-rounds=$ROUNDS data-path=\"$DATA\" out-json=\"$OUT\"" \
    >"$TMP/flwr-run.json" 2>"$TMP/flwr-run.err" || true
  RUN_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("run-id") or "")' \
    "$TMP/flwr-run.json" 2>/dev/null || true)
  [ -n "$RUN_ID" ] && break
  echo "flower: flwr run failed (attempt $attempt):" >&2
  cat "$TMP/flwr-run.json" "$TMP/flwr-run.err" >&2
  sleep 10
done
[ -n "$RUN_ID" ] || exit 1
echo "flower: run $RUN_ID, $N supernodes, $ROUNDS rounds" >&2

# Wait for the ServerApp's result, or for its process (a descendant of the SuperLink) to end
# without one. Polled with ps only: a `flwr ls` here would spend CPU the rounds need.
serverapp_running() {
  local pid
  for pid in $(descendants "${PIDS[0]}"); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q flwr-serverapp; then
      return 0
    fi
  done
  return 1
}
start=$(date +%s)
seen=0
while [ ! -s "$OUT" ]; do
  if [ $(($(date +%s) - start)) -gt "$TIMEOUT" ]; then
    echo "flower: no result after ${TIMEOUT}s; see $TMP" >&2
    exit 1
  fi
  check_memory
  if serverapp_running; then
    seen=1
  elif [ $seen = 1 ] || [ $(($(date +%s) - start)) -gt 600 ]; then
    sleep 2
    [ -s "$OUT" ] && break
    echo "flower: the ServerApp of run $RUN_ID ended without a result:" >&2
    FLWR_HOME="$TMP/cli" flwr log "$RUN_ID" bench --show 2>&1 | tail -40 >&2 || true
    exit 1
  fi
  sleep 1
done
echo "flower: peak memory in use on the machine ${PEAK_USED_MIB} MiB" >&2
cat "$OUT"
echo
