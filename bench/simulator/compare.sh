#!/usr/bin/env bash
# fedpool's simulator against a plain numpy FedAvg loop doing the same work (digits, 100
# clients × 10 rounds, logistic regression, Dirichlet 0.5), at 1 and 10 local epochs,
# interleaved run by run so both see the same machine load. Installs numpy from PyPI into a
# venv beside this script; needs a release build (`cargo build --release`).
#
# Usage: bench/simulator/compare.sh [RUNS]     (default 7 runs of each)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-7}"
bin="$root/target/release/fedpool"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install --quiet "numpy==2.3.5"
fi
py="$here/.venv/bin/python"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "epochs  run  fedpool_s  numpy_s  fedpool_acc  numpy_acc"
for epochs in 1 10; do
    sed "s/^local_epochs = .*/local_epochs = $epochs/" "$root/contracts/digits.toml" > "$tmp/digits.toml"
    for run in $(seq 1 "$runs"); do
        f=$("$bin" simulate "$tmp/digits.toml" --data bundled:digits --clients 100 --rounds 10 \
            --partition dirichlet:0.5 --seed "$run" --json --no-ledger)
        n=$("$py" "$here/numpy_fedavg.py" "$root/data/digits/digits.csv" "$epochs" "$run")
        "$py" -c "
import json, sys
f, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f'{sys.argv[3]:>6}  {sys.argv[4]:>3}  {f[\"seconds\"]:9.4f}  {n[\"seconds\"]:7.4f}  {f[\"final_accuracy\"]:11.3f}  {n[\"final_accuracy\"]:9.3f}')
" "$f" "$n" "$epochs" "$run"
    done
done | tee "$tmp/rows"
"$py" - "$tmp/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for epochs in ("1", "10"):
    mine = [r for r in rows if r[0] == epochs]
    f = statistics.median(float(r[2]) for r in mine)
    n = statistics.median(float(r[3]) for r in mine)
    print(f"{epochs:>2} local epochs: median fedpool {f:.4f} s, numpy {n:.4f} s: fedpool {n / f:.1f}x faster")
PY
