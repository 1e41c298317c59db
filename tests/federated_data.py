"""Log a federated run with the plain MlflowClient, following DESIGN.md's mapping exactly.

Used by the API, Command Station and export tests until the tracker library is there: an
experiment ``{collaboration}/{project}/{experiment}`` with its tags, a parent run (the
federation), one child run per participant, params, round-level metrics at steps 0..R-1,
epoch-level metrics, per-class metrics and artifacts in the DESIGN folders.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

PARENT_TAG = "mlflow.parentRunId"


@dataclass
class LoggedRun:
    collaboration: str
    project: str
    experiment: str
    run: str
    experiment_id: str
    parent_run_id: str
    participants: dict[str, str] = field(default_factory=dict)  # id -> MLflow run id
    global_files: list[str] = field(default_factory=list)
    participant_files: dict[str, list[str]] = field(default_factory=dict)
    rounds: int = 0
    epochs: int = 0

    @property
    def path(self) -> str:
        from urllib.parse import quote

        ids = (self.collaboration, self.project, self.experiment, self.run)
        return "/".join(quote(i, safe="") for i in ids)


def _value(participant: int, round_: int, offset: float = 0.0) -> float:
    return round(1.0 / (1 + round_) + 0.05 * participant + offset, 6)


def _log_batches(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _write(folder: Path, relative: str, data: bytes) -> None:
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def log_federated_run(
    tracking_uri: str,
    *,
    collaboration: str = "collab-a",
    project: str = "project-x",
    experiment: str = "exp-1",
    run: str = "run-1",
    participants: list[str] | None = None,
    rounds: int = 5,
    epochs: int = 2,
    classes: int = 3,
    artifacts: bool = True,
    model_bytes: int = 2048,
) -> LoggedRun:
    """Log one federated run and return what was logged."""
    client = MlflowClient(tracking_uri)
    participant_ids = participants if participants is not None else ["worker-1", "worker-2"]
    name = f"{collaboration}/{project}/{experiment}"
    existing = client.get_experiment_by_name(name)
    if existing is None:
        experiment_id = client.create_experiment(
            name,
            tags={
                "synergos.collaboration": collaboration,
                "synergos.project": project,
                "synergos.experiment": experiment,
                "mlflow.experimentKind": "custom_model_development",
            },
        )
    else:
        experiment_id = existing.experiment_id
    parent = client.create_run(
        experiment_id,
        run_name=run,
        tags={"synergos.run": run, "synergos.role": "federation"},
    )
    parent_id = parent.info.run_id
    logged = LoggedRun(
        collaboration, project, experiment, run, experiment_id, parent_id,
        rounds=rounds, epochs=epochs,
    )  # fmt: skip
    now = int(time.time() * 1000)
    client.log_batch(
        parent_id,
        params=[
            Param("algorithm", "FedProx"),
            Param("rounds", str(rounds)),
            Param("epochs", str(epochs)),
            Param("lr", "0.001"),
            Param("mu", "0.1"),
        ],
    )

    def metrics_for(index: int) -> list[Metric]:
        offset = 0.0 if index < 0 else 0.01
        points: list[Metric] = []
        for r in range(rounds):
            v = _value(index + 1, r, offset)
            points += [
                Metric("train/loss", v, now + r, r),
                Metric("evaluate/loss", v * 1.1, now + r, r),
                Metric("evaluate/accuracy", 1 - v / 2, now + r, r),
                Metric("evaluate/R2", 0.5 + r / (2 * rounds), now + r, r),
            ]
            points += [
                Metric(f"evaluate/accuracy/class_{c}", 0.5 + 0.1 * c - v / 10, now + r, r)
                for c in range(classes)
            ]
            for e in range(epochs):
                step = r * epochs + e
                points.append(Metric("train/epoch/loss", v * (1 - e / (2 * epochs)), now + r, step))
        return points

    _log_batches(client, parent_id, metrics_for(-1))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "global"
        if artifacts:
            history = {"train": {str(r): _value(0, r) for r in range(rounds)}}
            files = {
                "models/global/global_model.pt": b"\x00weights" * (model_bytes // 8),
                "loss_history/global_loss_history.json": json.dumps(history).encode(),
                "checkpoints/round_0/epoch_0/global_model.pt": b"\x01ckpt" * 16,
            }
            for relative, data in files.items():
                _write(folder, relative, data)
            client.log_artifacts(parent_id, str(folder))
            logged.global_files = sorted(files)
        for index, participant in enumerate(participant_ids):
            child = client.create_run(
                experiment_id,
                run_name=participant,
                tags={
                    PARENT_TAG: parent_id,
                    "synergos.participant": participant,
                    "synergos.role": "participant",
                },
            )
            child_id = child.info.run_id
            logged.participants[participant] = child_id
            _log_batches(client, child_id, metrics_for(index))
            if artifacts:
                local = Path(scratch) / f"p{index}"
                files = {
                    "models/local/local_model.pt": f"local {participant}".encode() * 64,
                    "loss_history/local_loss_history.json": json.dumps(
                        {str(r): _value(index + 1, r) for r in range(rounds)}
                    ).encode(),
                    "inference/evaluate/inference_statistics_evaluate.json": json.dumps(
                        {"accuracy": [0.9] * classes, "R2": 0.5}
                    ).encode(),
                }
                for relative, data in files.items():
                    _write(local, relative, data)
                client.log_artifacts(child_id, str(local))
                logged.participant_files[participant] = sorted(files)
            client.set_terminated(child_id, "FINISHED")
    client.set_terminated(parent_id, "FINISHED")
    assert not math.isnan(_value(0, 0))
    return logged
