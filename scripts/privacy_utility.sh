#!/usr/bin/env bash
# The privacy–utility table in the README: MNIST 10k, 1,000 owners, 10% sampled per round,
# 30 rounds, updates clipped to L2 norm 1, distributed discrete Gaussian noise with secure
# aggregation, for a range of noise multipliers z; plus the same rounds without noise.
#   scripts/privacy_utility.sh PATH/mnist_10k.csv.gz [FEDPOOL_BINARY]
set -euo pipefail
data="${1:?usage: $0 PATH/mnist_10k.csv.gz [fedpool binary]}"
fedpool="${2:-fedpool}"
cd "$(dirname "$0")/.."
printf '| z | secure aggregation | ε (δ = 1e-5) | test accuracy |\n| --- | --- | --- | --- |\n'
run() {
  local budget=()
  if [ "$1" != 0 ]; then budget=(--epsilon-budget 1000); fi
  "$fedpool" simulate contracts/mnist_private.toml --data "$data" --clients 1000 --seed 42 \
    --json --noise-multiplier "$1" --secure-aggregation "$2" "${budget[@]}" |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
eps = "no DP (no noise)" if d["epsilon"] is None else "%.2f" % d["epsilon"]
mode = "on" if d["secure_aggregation"] else "off (central DP)"
print("| %s | %s | %s | %.3f |" % (d["noise_multiplier"], mode, eps, d["final_accuracy"]))'
}
run 0 true
for z in 0.5 0.7 1.0 1.5 2.0 3.0 5.0; do run "$z" true; done
run 1.0 false
