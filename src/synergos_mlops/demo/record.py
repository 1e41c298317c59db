"""Run the demo's federated cycle and log every round through :class:`FederatedTracker`.

Training lives in :mod:`synergos_mlops.demo.training` and knows nothing of logging; this
module turns each :class:`RoundResult` into what an orchestrator logs:

- parent run (the federation): hyperparameters; ``train/loss`` (sample-weighted mean of the
  participants'), ``evaluate/loss`` and ``evaluate/accuracy`` of the global model on the
  orchestrator's held-out test set; Synergos' per-class statistics of that evaluation
  (``evaluate/<statistic>/class_<i>``); the epoch-level ``train/epoch/loss`` series; the
  global weights of every round as a checkpoint; the final global model; the loss history;
  the data partition; and the final model as a registered MLflow model;
- one child run per participant: its hardware statistics (``system/...``, sampled in this
  process while the rounds run, see docs/system.md); ``train/loss`` and the epoch series of
  its local model on its local training data; ``evaluate/loss``, ``evaluate/accuracy`` and
  the per-class statistics of the round's new global model on its local evaluation data (a
  Synergos TTP evaluates the global model at every participant); its local weights of every
  round as checkpoints and its final local model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synergos_mlops.demo.data import DATASET, FederatedData, load_federated_data
from synergos_mlops.demo.registry import RegisteredModel, register_global_model, registered_name
from synergos_mlops.demo.training import (
    RoundResult,
    SoftmaxModel,
    TrainingConfig,
    federated_rounds,
)
from synergos_mlops.federation import TAG_RUN, ExperimentIds, validate_id

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedRun, FederatedTracker

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

#: Seconds between two hardware samples of each participant. A sample is kept under the
#: whole second since its run began (docs/system.md), so two a second cover every second.
MONITOR_INTERVAL = 0.5
#: The shortest round the demo logs, in seconds. The digits train in a few hundredths of a
#: second a round; a round that trained faster waits, as a federation's rounds wait for their
#: participants' updates over the network, so every round holds hardware samples and the
#: run's Hardware tab shows what it is for.
ROUND_SECONDS = 1.5
#: The file name of model weights (``SoftmaxModel.to_bytes``: numpy's ``.npz``).
_WEIGHTS = "model.npz"


@dataclass(frozen=True)
class DemoConfig:
    """What to train and under which ids to log it."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    collaboration: str = "demo"
    project: str = "digits"
    experiment: str = "softmax-regression"
    #: The run id; by default the algorithm and the time, so each demo adds a new run.
    run: str | None = None
    #: The shortest round, in seconds (see ROUND_SECONDS); 0 logs each round once trained.
    round_seconds: float = ROUND_SECONDS

    def __post_init__(self) -> None:
        ExperimentIds(self.collaboration, self.project, self.experiment)
        if self.run is not None:
            validate_id("run", self.run)

    @property
    def ids(self) -> ExperimentIds:
        return ExperimentIds(self.collaboration, self.project, self.experiment)

    def run_id(self) -> str:
        if self.run is not None:
            return self.run
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return f"{self.training.algorithm}-{stamp}"


@dataclass(frozen=True)
class DemoResult:
    """What the demo logged, and how well its global model does."""

    ids: ExperimentIds
    run: str
    tracking_uri: str
    experiment_id: str
    run_id: str
    participant_run_ids: dict[str, str]
    registered: RegisteredModel
    model: SoftmaxModel
    #: Accuracy of the final global model on the held-out test set.
    test_accuracy: float
    #: Accuracy on the same test set of always predicting the participants' majority class.
    baseline_accuracy: float


def _majority_baseline(data: FederatedData) -> float:
    labels = np.concatenate([shard.y_train for shard in data.shards])
    majority = np.bincount(labels, minlength=data.n_classes).argmax()
    return float(np.mean(data.y_test == majority))


def _partition(data: FederatedData) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "classes": [int(c) for c in data.classes],
        "test_samples": len(data.y_test),
        "participants": {
            shard.participant: {
                "train_samples": shard.samples,
                "evaluate_samples": len(shard.y_evaluate),
                "class_counts": shard.class_counts(data.n_classes),
            }
            for shard in data.shards
        },
    }


def _log_datasets(run: FederatedRun, data: FederatedData) -> None:
    """Each participant's data per split in the catalogue, summarized as a Synergos worker
    summarizes image data (how many images, their size and colour mode), never the images."""
    side = math.isqrt(data.n_features)  # the digits are square grey images
    for shard in data.shards:
        for split, labels in (("train", shard.y_train), ("evaluate", shard.y_evaluate)):
            summary = {"src_count": len(labels), "_type": "image",
                       "pixel_height": side, "pixel_width": side, "color": "L"}  # fmt: skip
            run.log_dataset(shard.participant, split, summary)


def _log_round(run: FederatedRun, result: RoundResult) -> None:
    r = result.round
    for local in result.participants:
        p = local.participant
        for epoch, loss in enumerate(local.epoch_losses):
            run.log_epoch_metrics({"train/loss": loss}, round=r, epoch=epoch, participant=p)
        run.log_metrics(
            {
                "train/loss": local.train_loss,
                "evaluate/loss": local.evaluate_loss,
                "evaluate/accuracy": local.evaluate_accuracy,
            },
            step=r,
            participant=p,
        )
        run.log_model(local.model.to_bytes(), participant=p, round=r, name=_WEIGHTS)
    for epoch, loss in enumerate(result.epoch_losses):
        run.log_epoch_metrics({"train/loss": loss}, round=r, epoch=epoch)
    run.log_metrics(
        {
            "train/loss": result.train_loss,
            "evaluate/loss": result.evaluate_loss,
            "evaluate/accuracy": result.evaluate_accuracy,
        },
        step=r,
    )
    statistics: dict[str | None, dict[str, list[float]]] = {None: result.statistics}
    statistics.update({local.participant: local.statistics for local in result.participants})
    run.log_statistics(statistics, stage="evaluate", step=r)
    run.log_model(result.model.to_bytes(), round=r, name=_WEIGHTS)


def _log_outputs(run: FederatedRun, data: FederatedData, rounds: list[RoundResult]) -> None:
    """The final models, loss histories and the data partition, as Synergos keeps them."""
    final = rounds[-1]
    run.log_model(final.model.to_bytes(), name=_WEIGHTS)
    run.log_loss_history(
        {
            "train": {str(r.round): r.train_loss for r in rounds},
            "evaluate": {str(r.round): r.evaluate_loss for r in rounds},
        },
        name="global_loss_history.json",
    )
    for index, local in enumerate(final.participants):
        p = local.participant
        run.log_model(local.model.to_bytes(), participant=p, name=_WEIGHTS)
        run.log_loss_history(
            {str(r.round): r.participants[index].train_loss for r in rounds},
            participant=p,
            name=f"local_loss_history_{p}.json",
        )
    with tempfile.TemporaryDirectory(prefix="synmlops-demo-") as tmp:
        partition = Path(tmp) / "partition.json"
        partition.write_text(json.dumps(_partition(data), indent=2))
        run.log_artifact(partition, artifact_path="data")


@contextlib.contextmanager
def _central_logs(
    run: FederatedRun, participants: list[str]
) -> Iterator[dict[str | None, logging.Logger]]:
    """Loggers named as the original Synergos logger names them (``TTP_…``, ``WKR_<p>``),
    each kept in the run's central logs by the library's handler, and nowhere else."""
    loggers: dict[str | None, logging.Logger] = {}
    handlers = []
    for participant in [None, *participants]:
        name = "TTP_demo" if participant is None else f"WKR_{participant}"
        logger = logging.getLogger(name)
        handler = run.log_handler(participant)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        loggers[participant] = logger
        handlers.append((logger, handler))
    try:
        yield loggers
    finally:
        for logger, handler in handlers:
            logger.removeHandler(handler)


def _say_round(loggers: dict[str | None, logging.Logger], result: RoundResult) -> None:
    for local in result.participants:
        loggers[local.participant].info(
            "round %d: trained locally, train loss %.4f", result.round, local.train_loss
        )
    loggers[None].info(
        "round %d: aggregated %d participants", result.round, len(result.participants)
    )


def run_demo(
    tracker: FederatedTracker,
    config: DemoConfig,
    *,
    on_round: Callable[[RoundResult], None] | None = None,
) -> DemoResult:
    """Train, log every round through ``tracker``, register the final global model."""
    training = config.training
    data = load_federated_data(training.participants, seed=training.seed, alpha=training.alpha)
    participants = [shard.participant for shard in data.shards]
    ids = config.ids
    run_name = config.run_id()
    rounds: list[RoundResult] = []
    with tracker.run(
        collaboration=ids.collaboration,
        project=ids.project,
        experiment=ids.experiment,
        run=run_name,
        hyperparameters=training.hyperparameters(),
        participants=participants,
    ) as run:
        _log_datasets(run, data)
        with contextlib.ExitStack() as monitors:
            # Each participant's hardware, as its own monitor would send it (in-process here:
            # one sampler thread per participant, all watching this process).
            for participant in participants:
                monitors.enter_context(run.monitor(participant, interval=MONITOR_INTERVAL))
            loggers = monitors.enter_context(_central_logs(run, participants))
            loggers[None].info("federated cycle %s starts: %s", run_name, training.algorithm)
            began = time.monotonic()
            for result in federated_rounds(training, data):
                time.sleep(max(0.0, began + config.round_seconds - time.monotonic()))
                _log_round(run, result)
                began = time.monotonic()
                _say_round(loggers, result)
                rounds.append(result)
                if on_round is not None:
                    on_round(result)
            loggers[None].info("federated cycle %s ends after %d rounds", run_name, len(rounds))
        _log_outputs(run, data, rounds)
        run.flush()
        final = rounds[-1].model
        registered = register_global_model(
            tracking_uri=run.tracking_uri,
            experiment_id=run.experiment_id,
            run_id=run.run_id,
            name=registered_name(ids),
            model=final,
            example=data.x_test[:5],
            params=training.hyperparameters(),
            step=rounds[-1].round,
            tags={TAG_RUN: run_name},
        )
        participant_run_ids = {p: run.participant_run_id(p) for p in participants}
    return DemoResult(
        ids=ids,
        run=run_name,
        tracking_uri=run.tracking_uri,
        experiment_id=run.experiment_id,
        run_id=run.run_id,
        participant_run_ids=participant_run_ids,
        registered=registered,
        model=final,
        test_accuracy=float(np.mean(final.predict(data.x_test) == data.y_test)),
        baseline_accuracy=_majority_baseline(data),
    )
