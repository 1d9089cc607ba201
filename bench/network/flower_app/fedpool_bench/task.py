"""The task of fedpool's contracts/digits.toml in NumPy.

Multinomial logistic regression on the bundled digits CSV (label, p0..p63), features scaled
by the contract's range scaling (0..16 -> /16), weights start at zero. Local training follows
fedpool-core's `train_local`: mini-batch SGD, batches reshuffled each epoch, mean
cross-entropy, coupled weight decay on every parameter (g += wd * p), heavy-ball momentum
(v = mu * v + g; p -= lr * v) with fresh velocity every round.
"""

import numpy as np

N_FEATURES = 64
N_CLASSES = 10


def load_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the digits CSV as (features / 16 as float32, labels as int64)."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    label_col = header.index("label")
    feature_cols = [header.index(f"p{i}") for i in range(N_FEATURES)]
    x = raw[:, feature_cols] / 16.0
    y = raw[:, label_col].astype(np.int64)
    return x.astype(np.float32), y


def split(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train row indices, test row indices): a seeded shuffle, the first share is test."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = int(round(n_rows * test_fraction))
    return order[n_test:], order[:n_test]


def load_test(path: str, test_fraction: float, seed: int):
    x, y = load_digits(path)
    _, test = split(len(y), test_fraction, seed)
    return x[test], y[test]


def load_partition(path: str, partition_id: int, num_partitions: int,
                   test_fraction: float, seed: int):
    """IID share `partition_id` of `num_partitions` of the training rows."""
    x, y = load_digits(path)
    train, _ = split(len(y), test_fraction, seed)
    shares = np.array_split(train, num_partitions)  # train is already shuffled: IID
    rows = shares[partition_id]
    return x[rows], y[rows]


def initial_params() -> list[np.ndarray]:
    return [np.zeros((N_FEATURES, N_CLASSES), np.float32), np.zeros(N_CLASSES, np.float32)]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(params, x, y, epochs, batch_size, lr, momentum, weight_decay, rng):
    w, b = (p.astype(np.float32, copy=True) for p in params)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(N_CLASSES, dtype=np.float32)[y]
    n = len(y)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, tb = x[idx], onehot[idx]
            d = (_softmax(xb @ w + b) - tb) / len(idx)  # d(mean CE)/d(logits)
            gw = xb.T @ d + weight_decay * w
            gb = d.sum(axis=0) + weight_decay * b
            vw = momentum * vw + gw
            vb = momentum * vb + gb
            w -= lr * vw
            b -= lr * vb
    return [w, b]


def accuracy(params, x, y) -> float:
    w, b = params
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))
