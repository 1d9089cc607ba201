"""FedAvg of logistic regression on digits in plain numpy: the work `fedpool simulate
contracts/digits.toml --clients 100 --rounds 10 --partition dirichlet:0.5` does, written the
way a researcher would write it in Python (one client after another, one mini-batch step at a
time, vectorised within a step).

Same data (data/digits/digits.csv, pixels 0..16 scaled onto [0, 1]), same split sizes (20%
held out), Dirichlet(0.5) label skew over 100 clients, every client every round, zero initial
weights, the contract's local training (epochs, batch 16, learning rate 0.3, momentum 0.9,
weight decay 1e-4), FedAvg weighted by rows, and test accuracy after every round. Prints one
JSON object; `seconds` covers the rounds only (not loading or partitioning), as fedpool's
`seconds` does.

Usage: python numpy_fedavg.py DIGITS_CSV LOCAL_EPOCHS [SEED]
"""

import json
import sys
import time

import numpy as np


def load(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    # The label is the first column, then the 64 pixels.
    return data[:, 1:] / 16.0, data[:, 0].astype(np.int64)


def dirichlet_partition(labels, n_clients, alpha, rng):
    shares = [[] for _ in range(n_clients)]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        weights = rng.dirichlet([alpha] * n_clients)
        cuts = (np.cumsum(weights) * len(rows)).astype(int)[:-1]
        for client, part in enumerate(np.split(rows, cuts)):
            shares[client].extend(part.tolist())
    return [np.array(s, dtype=np.int64) for s in shares if len(s) > 0]


def main():
    path, epochs = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    rng = np.random.default_rng(seed)
    x, y = load(path)
    n_classes, n_features = 10, x.shape[1]
    order = rng.permutation(len(y))
    n_test = int(round(0.2 * len(y)))
    test, train = order[:n_test], order[n_test:]
    clients = [train[s] for s in dirichlet_partition(y[train], 100, 0.5, rng)]
    lr, momentum, weight_decay, batch = 0.3, 0.9, 1e-4, 16

    started = time.perf_counter()
    w = np.zeros((n_features, n_classes), dtype=np.float32)
    b = np.zeros(n_classes, dtype=np.float32)
    accuracy = 0.0
    for _ in range(10):
        sum_w = np.zeros_like(w)
        sum_b = np.zeros_like(b)
        total = 0
        for rows in clients:
            lw, lb = w.copy(), b.copy()
            vw, vb = np.zeros_like(w), np.zeros_like(b)
            xc, yc = x[rows], y[rows]
            for _ in range(epochs):
                perm = rng.permutation(len(rows))
                for start in range(0, len(rows), batch):
                    idx = perm[start : start + batch]
                    xb, yb = xc[idx], yc[idx]
                    z = xb @ lw + lb
                    z -= z.max(axis=1, keepdims=True)
                    p = np.exp(z)
                    p /= p.sum(axis=1, keepdims=True)
                    p[np.arange(len(idx)), yb] -= 1.0
                    p /= len(idx)
                    gw = xb.T @ p + weight_decay * lw
                    gb = p.sum(axis=0) + weight_decay * lb
                    vw = momentum * vw + gw
                    vb = momentum * vb + gb
                    lw -= lr * vw
                    lb -= lr * vb
            sum_w += len(rows) * lw
            sum_b += len(rows) * lb
            total += len(rows)
        w, b = sum_w / total, sum_b / total
        accuracy = float(((x[test] @ w + b).argmax(axis=1) == y[test]).mean())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "final_accuracy": accuracy, "clients": len(clients)}))


if __name__ == "__main__":
    main()
