"""ServerApp: FedAvg over every SuperNode every round, central test accuracy, round timing.

A round's wall time is the time between two consecutive calls of the central evaluation,
which FedAvg.start makes once before round 1 and once after each round's aggregation; so
round r covers sending the global model, every node's local training, collecting and
aggregating the replies (and the central evaluation of round r-1, ~1 ms).
"""

import json
import time
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedpool_bench import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    n_nodes = int(rc["num-nodes"])
    rounds = int(rc["num-server-rounds"])
    x_test, y_test = task.load_test(
        str(rc["data-path"]), float(rc["test-fraction"]), int(rc["split-seed"])
    )

    # Every node connected before the clock starts (fedpool's `cluster up` also returns
    # only once all nodes are connected).
    started = time.monotonic()
    while len(list(grid.get_node_ids())) < n_nodes:
        if time.monotonic() - started > 600:
            raise RuntimeError(f"only {len(list(grid.get_node_ids()))} of {n_nodes} nodes")
        time.sleep(0.5)
    log(INFO, "all %d nodes connected after %.1f s", n_nodes, time.monotonic() - started)

    stamps: list[float] = []
    accuracy: list[float] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        stamps.append(time.perf_counter())
        acc = task.accuracy(arrays.to_numpy_ndarrays(), x_test, y_test)
        if server_round > 0:
            accuracy.append(acc)
        return MetricRecord({"accuracy": acc})

    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,  # central evaluation only
        min_train_nodes=n_nodes,
        min_available_nodes=n_nodes,
        weighted_by_key="num-examples",
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(task.initial_params()),
        num_rounds=rounds,
        train_config=ConfigRecord(),
        evaluate_fn=evaluate,
    )
    round_ms = [(b - a) * 1000.0 for a, b in zip(stamps, stamps[1:])]
    result = {
        "system": "flower",
        "nodes": n_nodes,
        "rounds": rounds,
        "round_ms": round_ms,
        "accuracy": accuracy,
    }
    log(INFO, "benchmark result: %s", json.dumps(result))
    out = str(rc["out-json"])
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f)
