"""Log to an MLflow file store the way the original Synergos TTP does, with mlflow 1.7.2.

Runs under Python 3.7 in .venv-ttp (scripts/legacy-ttp.sh), so it must stay 3.7 code: no
walrus, no `=` in f-strings, no builtin generics outside annotations. Every subcommand takes
`--store DIR` (the tracking URI is that folder, as in the TTP's container) and prints one JSON
line on stdout.

    run      one federated cycle: experiment "<collab>_>_<project>_>_<expt>", a run named after
             the TTP's run id with its hyperparameters as params, then (run re-opened) global
             and local loss histories, per-participant statistics and the output files
    append   one metric point on an existing run, running or not
    finish   mark a run FINISHED
    list     experiments and runs as the 1.7.2 client sees them, plus the warnings it logged
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

STAGES = ("train", "evaluate", "predict")


def experiment_id_for(name: str) -> str:
    """The TTP caches experiment ids in its own database; looking the name up is equivalent."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return mlflow.create_experiment(name)
    return experiment.experiment_id


def made_up_global_losses(rounds: int) -> dict[str, dict[str, float]]:
    return {
        "train": {str(r): round(1.0 / (r + 1), 6) for r in range(rounds)},
        "evaluate": {str(r): round(1.0 / (r + 2), 6) for r in range(rounds)},
    }


def made_up_local_losses(rounds: int, index: int) -> dict[str, float]:
    return {str(r): round(1.0 / (r + 1) + 0.01 * (index + 1), 6) for r in range(rounds)}


def made_up_statistics(participants: list[str]) -> dict[str, Any]:
    """Per participant and stage: per-class lists (two classes) and one scalar, as workers send."""
    statistics: dict[str, Any] = {}
    for index, participant in enumerate(participants):
        stages: dict[str, Any] = {}
        for stage_index, stage in enumerate(STAGES[:2]):
            base = 0.5 + 0.01 * (index + 1) + 0.001 * stage_index
            stages[stage] = {
                "statistics": {
                    "accuracy": [round(base + 0.1 * c, 6) for c in range(2)],
                    "roc_auc_score": [round(base + 0.2 * c, 6) for c in range(2)],
                    "R2": round(base, 6),
                }
            }
        stages["predict"] = {}
        statistics[participant] = stages
    return statistics


def write_outputs(folder: str, participants: list[str], rounds: int) -> None:
    """The TTP's output folder: models and loss histories, written only where missing."""
    os.makedirs(folder, exist_ok=True)

    def put(name: str, content: bytes) -> None:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            with open(path, "wb") as handle:
                handle.write(content)

    put("global_model.pt", b"made-up global model\n")
    put("global_loss_history.json", json.dumps(made_up_global_losses(rounds)).encode())
    for index, participant in enumerate(participants):
        put(f"local_model_{participant}.pt", b"made-up local model\n")
        history = made_up_local_losses(rounds, index)
        put(f"local_loss_history_{participant}.json", json.dumps(history).encode())


def read_json(path: str) -> Any:
    with open(path) as handle:
        return json.load(handle)


def log_losses(global_losses: dict[str, Any], local_losses: dict[str, Any]) -> None:
    for stage, losses in global_losses.items():
        for round_index, loss in losses.items():
            mlflow.log_metric(f"global_{stage}_loss", loss, step=int(round_index))
    for participant, losses in local_losses.items():
        for round_index, loss in losses.items():
            mlflow.log_metric(f"{participant}_local_loss", loss, step=int(round_index))


def log_statistics(statistics: dict[str, Any]) -> None:
    """A list is per class: key `<stat>_class_<i>` at step i+1, so participants share keys."""
    for stages in statistics.values():
        for stage_values in stages.values():
            stats = stage_values.get("statistics", {}) if stage_values else {}
            for name, value in stats.items():
                if isinstance(value, list):
                    for class_index, class_value in enumerate(value):
                        key = f"{name}_class_{class_index}"
                        mlflow.log_metric(key, class_value, step=class_index + 1)
                else:
                    mlflow.log_metric(name, value)


def log_artifacts(folder: str | None) -> None:
    """The output folder's files, flat into the run's artifact root."""
    if folder:
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if os.path.isfile(path):
                mlflow.log_artifact(path)


def command_run(args: argparse.Namespace) -> dict[str, Any]:
    participants = [p for p in args.participants.split(",") if p]
    name = f"{args.collaboration}_>_{args.project}_>_{args.experiment}"
    experiment_id = experiment_id_for(name)
    hyperparameters = json.loads(args.hyperparameters)
    statistics = (
        json.loads(args.statistics) if args.statistics else made_up_statistics(participants)
    )
    if args.artifacts_dir:
        write_outputs(args.artifacts_dir, participants, args.rounds)
        global_losses = read_json(os.path.join(args.artifacts_dir, "global_loss_history.json"))
        local_losses = {
            p: read_json(os.path.join(args.artifacts_dir, f"local_loss_history_{p}.json"))
            for p in participants
        }
    else:
        global_losses = made_up_global_losses(args.rounds)
        local_losses = {p: made_up_local_losses(args.rounds, i) for i, p in enumerate(participants)}

    if args.keep_running:
        # One open run, never ended: the state of a run the TTP is still writing.
        active = mlflow.start_run(experiment_id=experiment_id, run_name=args.run)
        run_uuid = active.info.run_id
        mlflow.log_params(hyperparameters)
        log_losses(global_losses, local_losses)
        log_statistics(statistics)
        log_artifacts(args.artifacts_dir)
        atexit.unregister(mlflow.end_run)
    else:
        # As the TTP: create and log the params, then re-open the run by id for the rest.
        with mlflow.start_run(experiment_id=experiment_id, run_name=args.run) as active:
            run_uuid = active.info.run_id
            mlflow.log_params(hyperparameters)
        with mlflow.start_run(experiment_id=experiment_id, run_id=run_uuid):
            log_losses(global_losses, local_losses)
        with mlflow.start_run(experiment_id=experiment_id, run_id=run_uuid):
            log_statistics(statistics)
            log_artifacts(args.artifacts_dir)
    run = MlflowClient().get_run(run_uuid)
    return {
        "experiment_id": experiment_id,
        "experiment_name": name,
        "run_uuid": run_uuid,
        "run_name": args.run,
        "status": run.info.status,
        "artifact_uri": run.info.artifact_uri,
    }


def command_append(args: argparse.Namespace) -> dict[str, Any]:
    MlflowClient().log_metric(args.run_uuid, args.key, args.value, step=args.step)
    return {"run_uuid": args.run_uuid, "key": args.key, "step": args.step, "value": args.value}


def command_finish(args: argparse.Namespace) -> dict[str, Any]:
    client = MlflowClient()
    client.set_terminated(args.run_uuid)
    return {"run_uuid": args.run_uuid, "status": client.get_run(args.run_uuid).info.status}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname}: {record.getMessage()}")


def command_list(args: argparse.Namespace) -> dict[str, Any]:
    collect = Collect()
    # mlflow's own loggers do not propagate; its file store logs on the root logger.
    loggers = [logging.getLogger(), logging.getLogger("mlflow")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        client = MlflowClient()
        experiments = client.list_experiments()
        runs = []
        if experiments:
            runs = client.search_runs([e.experiment_id for e in experiments])
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    return {
        "experiments": [
            {
                "experiment_id": e.experiment_id,
                "name": e.name,
                "artifact_location": e.artifact_location,
                "lifecycle_stage": e.lifecycle_stage,
            }
            for e in experiments
        ],
        "runs": [
            {
                "run_uuid": r.info.run_id,
                "experiment_id": r.info.experiment_id,
                "run_name": r.data.tags.get("mlflow.runName"),
                "status": r.info.status,
                "artifact_uri": r.info.artifact_uri,
                "params": r.data.params,
                "metrics": r.data.metrics,
            }
            for r in runs
        ],
        "warnings": collect.messages,
    }


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command")
    commands.required = True

    run = commands.add_parser("run", help="log one federated cycle")
    run.add_argument("--collaboration", required=True)
    run.add_argument("--project", required=True)
    run.add_argument("--experiment", required=True)
    run.add_argument("--run", required=True, help="the TTP's run id, the MLflow run name")
    run.add_argument("--hyperparameters", default="{}", help="flat JSON object")
    run.add_argument("--participants", required=True, help="comma-separated participant ids")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--artifacts-dir", help="the TTP's output folder; missing files are made")
    run.add_argument(
        "--statistics", help='JSON {participant: {stage: {"statistics": {stat: value}}}}'
    )
    run.add_argument("--keep-running", action="store_true", help="never end the run")
    run.set_defaults(handler=command_run)

    append = commands.add_parser("append", help="append one metric point to a run")
    append.add_argument("--run-uuid", required=True)
    append.add_argument("--key", required=True)
    append.add_argument("--step", type=int, required=True)
    append.add_argument("--value", type=float, required=True)
    append.set_defaults(handler=command_append)

    finish = commands.add_parser("finish", help="mark a run FINISHED")
    finish.add_argument("--run-uuid", required=True)
    finish.set_defaults(handler=command_finish)

    listing = commands.add_parser("list", help="experiments and runs as 1.7.2 sees them")
    listing.set_defaults(handler=command_list)

    for sub in (run, append, finish, listing):
        sub.add_argument("--store", required=True, help="the file store folder")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    mlflow.set_tracking_uri(args.store)
    result = args.handler(args)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
