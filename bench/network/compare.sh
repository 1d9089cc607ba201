#!/usr/bin/env bash
# compare.sh [ROUNDS] [NODES...]
#
# For each node count, runs fedpool and Flower interleaved (fedpool, flower, fedpool, flower)
# and prints a markdown table of median round wall time and final accuracy. Each run's JSON
# is kept in results/<timestamp>/. Defaults: ROUNDS=5, NODES="10 50 100".
# REPS (default 2) sets the repetitions per system.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-5}
shift || true
NODES=("$@")
if [ ${#NODES[@]} -eq 0 ]; then
  NODES=(10 50 100)
fi
REPS=${REPS:-2}
RESULTS="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"

declare -A OOM=() # systems that ran out of memory at a node count are not run there again
run() { # run SYSTEM N REP: one run, its stderr in a .log; a failure leaves {"failed": reason}
  local system=$1 n=$2 rep=$3 script status=0
  script=$([ "$system" = fedpool ] && echo fedpool_cluster.sh || echo flower_deployment.sh)
  local base="$RESULTS/$system-$n-$rep"
  if [ -n "${OOM[$system-$n]:-}" ]; then
    echo '{"failed": "out of memory"}' >"$base.json"
    return
  fi
  echo "== $n nodes, repetition $rep: $system" >&2
  "$HERE/$script" "$n" "$ROUNDS" "$base.json" >/dev/null 2> >(tee "$base.log" >&2) || status=$?
  if [ $status -ne 0 ]; then
    local reason="exit $status"
    if [ $status = 3 ]; then
      reason="out of memory"
      OOM[$system-$n]=1
    fi
    echo "$system failed at $n nodes (repetition $rep): $reason" >&2
    python3 -c 'import json,sys; json.dump({"failed": sys.argv[2]}, open(sys.argv[1], "w"))' \
      "$base.json" "$reason"
  fi
}

for n in "${NODES[@]}"; do
  for rep in $(seq "$REPS"); do
    run fedpool "$n" "$rep"
    run flower "$n" "$rep"
  done
done

python3 - "$RESULTS" "$ROUNDS" "${NODES[@]}" <<'EOF'
import glob, json, os, statistics, sys

results, rounds, nodes = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]

def summary(system, n):
    all_runs = [json.load(open(p)) for p in sorted(glob.glob(f"{results}/{system}-{n}-*.json"))]
    runs = [r for r in all_runs if "failed" not in r]
    if not runs:
        why = sorted({r["failed"] for r in all_runs}) or ["no run"]
        return f"failed ({', '.join(why)})", "–"
    # Round 1 is warm-up (first contact, Flower's first app install), dropped when there are more.
    times = [t for r in runs for t in (r["round_ms"][1:] if len(r["round_ms"]) > 1 else r["round_ms"])]
    accs = [r["accuracy"][-1] for r in runs]
    ms = statistics.median(times)
    ms_s = f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"
    return f"{ms_s} ({len(runs)} runs)", " / ".join(f"{a:.3f}" for a in accs)

print(f"Round wall time, median over rounds 2..{rounds} of every run; "
      f"final accuracy after {rounds} rounds, per run.\n")
print("| nodes | fedpool median round ms | Flower median round ms "
      "| fedpool final accuracy | Flower final accuracy |")
print("| --- | --- | --- | --- | --- |")
for n in nodes:
    fp_ms, fp_acc = summary("fedpool", n)
    fl_ms, fl_acc = summary("flower", n)
    print(f"| {n} | {fp_ms} | {fl_ms} | {fp_acc} | {fl_acc} |")
print(f"\n(raw results: {os.path.relpath(results)})")
EOF
