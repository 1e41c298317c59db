"""A small Flower simulation logged through SynergosStrategy; run in .venv-fl by the tests.

    python flower_federation.py TRACKING_URI COLLABORATION RUN OUT_JSON

Three clients fit a numpy linear model (y = 2x + 1 plus each partition's own offset) for
three rounds; partition 2 raises in round 2's training. Every client appends what it
returned to ``$FLOWER_REPLIES`` (one JSON line per reply); the ServerApp writes Flower's own
``Result`` and the ids it logged to OUT_JSON.

With ``$FLOWER_GATES`` (a folder), partition 0 holds each round's training from round 2 on:
it writes ``<folder>/round-<r>`` and waits for ``<folder>/go-<r>``, so a test can act between
rounds (stop the tracking server, start it again). With ``$FLOWER_BAD_KEY``, every client's
evaluation also reports that key (one MLflow refuses) between its good ones.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from synergos_mlops.integrations.flower import SynergosStrategy
from synergos_mlops.tracking import TrackerConfig

ROUNDS = 3
FAILING = (2, "train", 2)  # partition 2 raises in round 2's training


def data(partition: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(partition)
    x = rng.uniform(-1, 1, size=20 + 10 * partition)
    return x, 2 * x + 1 + 0.1 * partition + rng.normal(0, 0.05, size=x.size)


def loss_of(w: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((w * x + b - y) ** 2))


def record(partition: int, stage: str, server_round: int, values: dict[str, float]) -> None:
    line = {"partition": partition, "stage": stage, "round": server_round, "values": values}
    with open(os.environ["FLOWER_REPLIES"], "a") as out:
        out.write(json.dumps(line) + "\n")


def gate(partition: int, server_round: int) -> None:
    folder = os.environ.get("FLOWER_GATES")
    if not folder or partition != 0 or server_round < 2:
        return
    (Path(folder) / f"round-{server_round}").touch()
    deadline = time.monotonic() + 400
    while not (Path(folder) / f"go-{server_round}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {server_round} was never let go")
        time.sleep(0.1)


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    if (partition, "train", server_round) == FAILING:
        raise RuntimeError(f"partition {partition} lost its data in round {server_round}")
    gate(partition, server_round)
    w, b = (float(a[0]) for a in msg.content["arrays"].to_numpy_ndarrays())
    x, y = data(partition)
    for _ in range(5):
        error = w * x + b - y
        w -= 0.3 * float(np.mean(2 * error * x))
        b -= 0.3 * float(np.mean(2 * error))
    values = {
        "loss": loss_of(w, b, x, y),
        "steps": 5,
        "num-examples": int(x.size),
        "partition-id": partition,
    }
    record(partition, "train", server_round, values)
    arrays = ArrayRecord([np.array([w]), np.array([b])])
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(values)}), reply_to=msg)


@client.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    w, b = (float(a[0]) for a in msg.content["arrays"].to_numpy_ndarrays())
    x, y = data(partition)
    loss = loss_of(w, b, x, y)
    values = {
        "loss": loss,
        **(
            {os.environ["FLOWER_BAD_KEY"]: 0.5 + partition}
            if "FLOWER_BAD_KEY" in os.environ
            else {}
        ),
        "mae": float(np.mean(np.abs(w * x + b - y))),
        "num-examples": int(x.size),
        "partition-id": partition,
    }
    record(partition, "evaluate", server_round, values)
    return Message(RecordDict({"metrics": MetricRecord(values)}), reply_to=msg)


def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    w, b = (float(a[0]) for a in arrays.to_numpy_ndarrays())
    x = np.linspace(-1, 1, 50)
    return MetricRecord({"loss": loss_of(w, b, x, 2 * x + 1), "w": w, "b": b})


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    tracking_uri, collaboration, run, out = sys.argv[1:5]
    strategy = SynergosStrategy(
        FedAvg(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=3,
            min_evaluate_nodes=3,
            min_available_nodes=3,
        ),
        tracking_uri=tracking_uri,
        collaboration=collaboration,
        project="flower",
        experiment="linear",
        run=run,
        run_config={"lr": 0.3, "local-steps": 5},
        # FLOWER_DEFAULT_CONFIG: the wrapper's own tracker settings (its spool in the cache).
        config=None
        if os.environ.get("FLOWER_DEFAULT_CONFIG")
        else TrackerConfig(spool_dir=Path(out).parent / "spool", flush_interval=0.1),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.array([0.0]), np.array([0.0])]),
        num_rounds=ROUNDS,
        evaluate_fn=central_evaluation,
    )

    def plain(history: dict[int, MetricRecord]) -> dict[str, dict[str, object]]:
        return {str(r): dict(m) for r, m in history.items()}

    Path(out).write_text(
        json.dumps(
            {
                "train": plain(result.train_metrics_clientapp),
                "evaluate": plain(result.evaluate_metrics_clientapp),
                "server": plain(result.evaluate_metrics_serverapp),
                "arrays": [a.tolist() for a in result.arrays.to_numpy_ndarrays()],
                "model_version": strategy.model_version,
                "flush_interval": strategy.tracker_config.flush_interval,
                "run_id": strategy.federated_run.run_id if strategy.federated_run else None,
            }
        )
    )


if __name__ == "__main__":
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=3,
        backend_config={
            "init_args": {"num_cpus": 2, "include_dashboard": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )
