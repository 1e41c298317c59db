"""A Flower simulation on Flower's older strategy API (``flwr.server.strategy``), logged
through SynergosLegacyStrategy; run in .venv-fl by the tests.

    python flower_legacy.py TRACKING_URI COLLABORATION RUN OUT_JSON

The clients of flower_federation.py as NumPyClients (the same data, model and failing
partition), three rounds under FedAvg with its metric aggregation functions and a centralized
evaluation. Every client reply, every aggregation and every centralized evaluation appends
what it returned to ``$FLOWER_REPLIES`` (partition -1 for the server's), in order; OUT_JSON
gets the final parameters and the ids the wrapper logged. With ``$FLOWER_BAD_KEY``, every
client's evaluation also reports that key (one MLflow refuses) between its good ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from flower_federation import FAILING, ROUNDS, data, loss_of, record
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.simulation import run_simulation

from synergos_mlops.integrations.flower import SynergosLegacyStrategy
from synergos_mlops.tracking import TrackerConfig

BAD_KEY = "FLOWER_BAD_KEY" in os.environ


class Linear(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        server_round = int(config["server_round"])
        if (self.partition, "train", server_round) == FAILING:
            raise RuntimeError(f"partition {self.partition} lost its data in round {server_round}")
        w, b = (float(a[0]) for a in parameters)
        x, y = data(self.partition)
        for _ in range(5):
            error = w * x + b - y
            w -= 0.3 * float(np.mean(2 * error * x))
            b -= 0.3 * float(np.mean(2 * error))
        values = {"loss": loss_of(w, b, x, y), "steps": 5, "partition-id": self.partition}
        record(self.partition, "train", server_round, values)
        return [np.array([w]), np.array([b])], int(x.size), values

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        server_round = int(config["server_round"])
        w, b = (float(a[0]) for a in parameters)
        x, y = data(self.partition)
        loss = loss_of(w, b, x, y)
        metrics = {
            "mae": float(np.mean(np.abs(w * x + b - y))),
            **({os.environ["FLOWER_BAD_KEY"]: 0.5 + self.partition} if BAD_KEY else {}),
            "partition-id": self.partition,
        }
        record(self.partition, "evaluate", server_round, {"loss": loss, **metrics})
        return loss, int(x.size), metrics


def client_fn(context: Context) -> Any:
    return Linear(int(context.node_config["partition-id"])).to_client()


def aggregation(stage: str) -> Any:
    """FedAvg's metric aggregation: the num_examples-weighted mean of each key."""
    rounds = iter(range(1, ROUNDS + 1))

    def aggregate(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        total = sum(n for n, _ in metrics)
        keys = sorted({k for _, values in metrics for k in values})
        mean = {k: sum(n * float(values[k]) for n, values in metrics) / total for k in keys}
        record(-1, stage, next(rounds), mean)
        return mean

    return aggregate


def central_evaluation(server_round: int, arrays: list[np.ndarray], _config: Any) -> Any:
    w, b = (float(a[0]) for a in arrays)
    x = np.linspace(-1, 1, 50)
    loss = loss_of(w, b, x, 2 * x + 1)
    record(-1, "server", server_round, {"loss": loss, "w": w, "b": b})
    return loss, {"w": w, "b": b}


tracking_uri, collaboration, run, out = sys.argv[1:5]
round_config = lambda server_round: {"server_round": server_round}  # noqa: E731
strategy = SynergosLegacyStrategy(
    FedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=3, min_evaluate_clients=3,
        min_available_clients=3, on_fit_config_fn=round_config,
        on_evaluate_config_fn=round_config, evaluate_fn=central_evaluation,
        fit_metrics_aggregation_fn=aggregation("aggregate-train"),
        evaluate_metrics_aggregation_fn=aggregation("aggregate-evaluate"),
        initial_parameters=ndarrays_to_parameters([np.array([0.0]), np.array([0.0])]),
    ),
    tracking_uri=tracking_uri, collaboration=collaboration, project="flower",
    experiment="legacy", run=run, num_rounds=ROUNDS, run_config={"lr": 0.3},
    config=TrackerConfig(spool_dir=Path(out).parent / "spool", flush_interval=0.1),
)  # fmt: skip
server = ServerApp(config=ServerConfig(num_rounds=ROUNDS), strategy=strategy)

if __name__ == "__main__":
    run_simulation(
        server_app=server,
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=3,
        backend_config={
            "init_args": {"num_cpus": 2, "include_dashboard": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )
    final = strategy.parameters
    Path(out).write_text(json.dumps({
        "arrays": [a.tolist() for a in parameters_to_ndarrays(final)] if final else None,
        "model_version": strategy.model_version,
        "run_id": strategy.federated_run.run_id if strategy.federated_run else None,
    }))  # fmt: skip
