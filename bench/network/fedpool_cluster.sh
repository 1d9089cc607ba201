#!/usr/bin/env bash
# fedpool_cluster.sh N ROUNDS OUTJSON
#
# Trains contracts/digits.toml on a local fedpool network: `fedpool cluster up` starts a
# publisher and N owner processes on loopback (IID split, seed 42, every owner consents),
# the publisher's node trains ROUNDS rounds evaluating on its held-out rows, and the rounds'
# `round_ms` and `accuracy` are written to OUTJSON as
# {"system":"fedpool","nodes":N,"rounds":R,"round_ms":[...],"accuracy":[...]}.
# `fedpool cluster down` (and, should that fail, a kill of the nodes' PIDs) ends it.
#
# Environment: FEDPOOL, the binary (default: target/release/fedpool, built with
# `cargo build --release -p fedpool-cli --locked` if missing); KEEP_TMP=1 keeps the homes.
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

if [ -z "${FEDPOOL:-}" ]; then
  FEDPOOL="$ROOT/target/release/fedpool"
  if [ ! -x "$FEDPOOL" ]; then
    echo "building $FEDPOOL (takes 10+ minutes on 2 cores)" >&2
    (cd "$ROOT" && cargo build --release -p fedpool-cli --locked >&2)
  fi
fi
FEDPOOL=$(realpath "$FEDPOOL")
# Its own network name, so the cluster never talks to another fedpool network on this host.
export FEDPOOL_NETWORK="fedpool-bench-$$"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedpool-bench.XXXXXX")
DIR="$TMP/cluster"
cleanup() {
  local status=$?
  if [ -f "$DIR/cluster.json" ]; then
    "$FEDPOOL" cluster down --dir "$DIR" >/dev/null 2>&1 || true
  fi
  if [ -f "$TMP/up.json" ]; then # whatever `cluster down` left
    for pid in $(python3 -c 'import json,sys; print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$TMP/up.json" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  if [ "${KEEP_TMP:-0}" = 1 ] || [ $status -ne 0 ]; then
    echo "fedpool homes and logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$FEDPOOL" cluster up --dir "$DIR" --nodes "$N" --contract "$ROOT/contracts/digits.toml" \
  --seed 42 --json >"$TMP/up.json"
read -r MODEL PUBLISHER < <(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(c["model"], c["nodes"][0]["home"])' "$TMP/up.json")
echo "fedpool: model $MODEL, $N owners, $ROUNDS rounds" >&2

# round_ms is the publisher node's time from a round's start to its commit (aggregation,
# evaluation on the held-out rows and the ledger write included); the gap to the next
# round's start is ~0.3 ms (node.log), so it is also the time between completions.
"$FEDPOOL" --home "$PUBLISHER" train "$MODEL" --rounds "$ROUNDS" --eval eval --json \
  >"$TMP/train.jsonl"

mkdir -p "$(dirname "$OUT")"
python3 - "$TMP/train.jsonl" "$N" "$ROUNDS" "$OUT" <<'EOF'
import json, sys
path, n, rounds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = [json.loads(l) for l in open(path) if l.strip()]
done = [l for l in lines if l.get("event") == "completed"]
if len(done) != rounds:
    sys.exit(f"fedpool completed {len(done)} of {rounds} rounds: {lines}")
short = [l for l in done if l.get("contributors") != n]
if short:
    print(f"warning: rounds with fewer than {n} contributors: {short}", file=sys.stderr)
result = {
    "system": "fedpool",
    "nodes": n,
    "rounds": rounds,
    "round_ms": [l["round_ms"] for l in done],
    "accuracy": [l["accuracy"] for l in done],
}
json.dump(result, open(out, "w"))
print(json.dumps(result))
EOF
