"""ClientApp: local training on this SuperNode's IID share of the digits training rows."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedpool_bench import task

app = ClientApp()

_DATA: dict = {}


def _partition(context: Context):
    """This node's rows (node config: partition-id, num-partitions, data-path)."""
    nc, rc = context.node_config, context.run_config
    key = (int(nc["partition-id"]), int(nc["num-partitions"]), str(nc["data-path"]))
    if key not in _DATA:
        _DATA[key] = task.load_partition(
            key[2], key[0], key[1], float(rc["test-fraction"]), int(rc["split-seed"])
        )
    return _DATA[key]


@app.train()
def train(msg: Message, context: Context) -> Message:
    x, y = _partition(context)
    rc = context.run_config
    params = msg.content["arrays"].to_numpy_ndarrays()
    server_round = int(msg.content["config"]["server-round"])
    rng = np.random.default_rng([int(context.node_config["partition-id"]), server_round])
    new = task.train(
        params, x, y,
        epochs=int(rc["local-epochs"]),
        batch_size=int(rc["batch-size"]),
        lr=float(rc["learning-rate"]),
        momentum=float(rc["momentum"]),
        weight_decay=float(rc["weight-decay"]),
        rng=rng,
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(new),
            "metrics": MetricRecord({"num-examples": len(y)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Unused (the server evaluates centrally); kept as `flwr new` would."""
    x, y = _partition(context)
    params = msg.content["arrays"].to_numpy_ndarrays()
    metrics = MetricRecord({"accuracy": task.accuracy(params, x, y), "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
