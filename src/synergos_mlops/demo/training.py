"""A federated cycle in plain numpy: softmax regression, FedAvg or FedProx.

Each round every participant starts from the global weights and runs ``epochs`` passes of
minibatch SGD over its local training data. FedProx adds the proximal term
``mu/2 * ||w - w_global||^2`` to the local objective, which pulls local weights towards the
global ones when participants' data differ. The orchestrator averages the local weights,
weighted by the participants' sample counts, and evaluates the new global model on its
held-out test set and, as a Synergos TTP does, on each participant's local evaluation data.
Nothing here logs: :func:`federated_rounds` yields one
:class:`RoundResult` per round and the caller decides what to keep.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synergos_mlops.demo.data import MAX_PARTICIPANTS, FederatedData, Shard
from synergos_mlops.demo.statistics import class_statistics, cross_entropy
from synergos_mlops.errors import InvalidValueError

__all__ = [
    "ALGORITHMS",
    "ParticipantRound",
    "RoundResult",
    "SoftmaxModel",
    "TrainingConfig",
    "aggregate",
    "federated_rounds",
    "local_train",
]

ALGORITHMS: tuple[str, ...] = ("fedavg", "fedprox")


@dataclass(frozen=True)
class TrainingConfig:
    """The hyperparameters of one federated cycle."""

    participants: int = 3
    rounds: int = 10
    epochs: int = 5
    algorithm: str = "fedprox"
    lr: float = 0.5
    mu: float = 0.1
    batch_size: int = 32
    seed: int = 0
    #: Dirichlet concentration of the label skew across participants (smaller = less IID).
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.participants <= MAX_PARTICIPANTS:
            raise InvalidValueError(
                f"participants must be between 1 and {MAX_PARTICIPANTS}, not {self.participants}"
            )
        for name in ("rounds", "epochs", "batch_size"):
            value = getattr(self, name)
            if not 1 <= value <= 10_000:
                raise InvalidValueError(f"{name} must be between 1 and 10000, not {value}")
        if self.algorithm not in ALGORITHMS:
            raise InvalidValueError(
                f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}"
            )
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise InvalidValueError(f"lr must be a positive number, not {self.lr}")
        if not (np.isfinite(self.mu) and self.mu >= 0):
            raise InvalidValueError(f"mu must be a number of at least 0, not {self.mu}")
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            raise InvalidValueError(f"alpha must be a positive number, not {self.alpha}")

    @property
    def proximal_mu(self) -> float:
        """The proximal coefficient in force: ``mu`` for FedProx, 0 for FedAvg."""
        return self.mu if self.algorithm == "fedprox" else 0.0

    def hyperparameters(self) -> dict[str, Any]:
        """What a Synergos orchestrator records as the run's hyperparameters."""
        algorithm = {"fedavg": "FedAvg", "fedprox": "FedProx"}[self.algorithm]
        params: dict[str, Any] = {
            "algorithm": algorithm,
            "rounds": self.rounds,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "participants": self.participants,
            "seed": self.seed,
            "alpha": self.alpha,
        }
        if self.algorithm == "fedprox":
            params["mu"] = self.mu
        return params


@dataclass(frozen=True, eq=False)
class SoftmaxModel:
    """Multinomial logistic regression: ``softmax(x @ coef.T + intercept)``."""

    coef: NDArray[np.float64]  # (classes, features)
    intercept: NDArray[np.float64]  # (classes,)
    classes: NDArray[np.int64]

    @classmethod
    def zeros(cls, n_features: int, classes: NDArray[np.int64]) -> SoftmaxModel:
        k = len(classes)
        return cls(np.zeros((k, n_features)), np.zeros(k), classes)

    def decision_function(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(x @ self.coef.T + self.intercept, dtype=np.float64)

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        logits = self.decision_function(x)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        return np.asarray(self.classes[np.argmax(self.decision_function(x), axis=1)])

    def loss(self, x: NDArray[np.float64], y: NDArray[np.int64]) -> float:
        return cross_entropy(y, self.predict_proba(x))

    def to_bytes(self) -> bytes:
        """The weights as an ``.npz`` file (``coef``, ``intercept``, ``classes``)."""
        buffer = io.BytesIO()
        np.savez(buffer, coef=self.coef, intercept=self.intercept, classes=self.classes)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SoftmaxModel:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["coef"], arrays["intercept"], arrays["classes"])

    def to_sklearn(self) -> Any:
        """A fitted scikit-learn ``LogisticRegression`` that predicts exactly as this model."""
        from sklearn.linear_model import LogisticRegression

        estimator = LogisticRegression()
        estimator.coef_ = self.coef.copy()
        estimator.intercept_ = self.intercept.copy()
        estimator.classes_ = self.classes.copy()
        estimator.n_features_in_ = self.coef.shape[1]
        estimator.n_iter_ = np.zeros(1, dtype=np.int32)
        return estimator


@dataclass(frozen=True)
class ParticipantRound:
    """One participant's part of a round: its local model, and how the round's new global
    model does on the participant's local evaluation data."""

    participant: str
    samples: int
    #: Training loss of the local model on the local training data after each local epoch.
    epoch_losses: tuple[float, ...]
    #: Loss of the new global model on the participant's local evaluation data.
    evaluate_loss: float
    #: Accuracy of the new global model on the participant's local evaluation data.
    evaluate_accuracy: float
    #: Synergos' per-class statistics of the new global model on the local evaluation data.
    statistics: dict[str, list[float]]
    model: SoftmaxModel

    @property
    def train_loss(self) -> float:
        return self.epoch_losses[-1]


@dataclass(frozen=True)
class RoundResult:
    """One round: every participant's local result and the new global model."""

    round: int
    participants: tuple[ParticipantRound, ...]
    model: SoftmaxModel
    #: Sample-weighted mean of the participants' losses after each local epoch.
    epoch_losses: tuple[float, ...]
    #: Loss and per-class statistics of the global model on the held-out test set.
    evaluate_loss: float
    statistics: dict[str, list[float]]
    evaluate_accuracy: float = field(default=0.0)

    @property
    def train_loss(self) -> float:
        return self.epoch_losses[-1]


def local_train(
    shard: Shard,
    start: SoftmaxModel,
    config: TrainingConfig,
    rng: np.random.Generator,
) -> tuple[SoftmaxModel, list[float]]:
    """Run ``config.epochs`` epochs of minibatch SGD from ``start``; return the local model
    and its training loss after each epoch."""
    x, y = shard.x_train, shard.y_train
    n_classes = len(start.classes)
    onehot = np.eye(n_classes)[y]
    coef, intercept = start.coef.copy(), start.intercept.copy()
    mu = config.proximal_mu
    losses: list[float] = []
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        for begin in range(0, len(y), config.batch_size):
            batch = order[begin : begin + config.batch_size]
            xb = x[batch]
            logits = xb @ coef.T + intercept
            logits -= logits.max(axis=1, keepdims=True)
            proba = np.exp(logits)
            proba /= proba.sum(axis=1, keepdims=True)
            error = (proba - onehot[batch]) / len(batch)
            grad_coef = error.T @ xb
            grad_intercept = error.sum(axis=0)
            if mu:
                grad_coef += mu * (coef - start.coef)
                grad_intercept += mu * (intercept - start.intercept)
            coef -= config.lr * grad_coef
            intercept -= config.lr * grad_intercept
        losses.append(SoftmaxModel(coef, intercept, start.classes).loss(x, y))
    return SoftmaxModel(coef, intercept, start.classes), losses


def aggregate(models: Sequence[SoftmaxModel], weights: Sequence[float]) -> SoftmaxModel:
    """The weighted mean of the models' parameters (FedAvg's and FedProx's aggregation)."""
    share = np.asarray(weights, dtype=np.float64)
    share = share / share.sum()
    coef = np.sum([w * m.coef for w, m in zip(share, models, strict=True)], axis=0)
    intercept = np.sum([w * m.intercept for w, m in zip(share, models, strict=True)], axis=0)
    return SoftmaxModel(coef, intercept, models[0].classes)


def federated_rounds(config: TrainingConfig, data: FederatedData) -> Iterator[RoundResult]:
    """Run the federated cycle, yielding each round's result as soon as it is known."""
    if len(data.shards) != config.participants:
        raise InvalidValueError(
            f"the data has {len(data.shards)} shards for {config.participants} participants"
        )
    n_classes = data.n_classes
    model = SoftmaxModel.zeros(data.n_features, data.classes)
    samples = [shard.samples for shard in data.shards]
    for round_index in range(config.rounds):
        trained: list[tuple[SoftmaxModel, list[float]]] = []
        for index, shard in enumerate(data.shards):
            rng = np.random.default_rng([config.seed, round_index, index])
            trained.append(local_train(shard, model, config, rng))
        model = aggregate([local for local, _ in trained], samples)
        locals_: list[ParticipantRound] = []
        for shard, (local, losses) in zip(data.shards, trained, strict=True):
            local_proba = model.predict_proba(shard.x_evaluate)
            locals_.append(
                ParticipantRound(
                    participant=shard.participant,
                    samples=shard.samples,
                    epoch_losses=tuple(losses),
                    evaluate_loss=cross_entropy(shard.y_evaluate, local_proba),
                    evaluate_accuracy=_accuracy(shard.y_evaluate, local_proba),
                    statistics=class_statistics(shard.y_evaluate, local_proba, n_classes),
                    model=local,
                )
            )
        share = np.asarray(samples, dtype=np.float64) / sum(samples)
        epoch_losses = tuple(
            float(np.dot(share, [p.epoch_losses[e] for p in locals_])) for e in range(config.epochs)
        )
        proba = model.predict_proba(data.x_test)
        yield RoundResult(
            round=round_index,
            participants=tuple(locals_),
            model=model,
            epoch_losses=epoch_losses,
            evaluate_loss=cross_entropy(data.y_test, proba),
            statistics=class_statistics(data.y_test, proba, n_classes),
            evaluate_accuracy=_accuracy(data.y_test, proba),
        )


def _accuracy(y: NDArray[np.int64], proba: NDArray[np.float64]) -> float:
    """Share of samples whose most probable class (index into the model's classes) is right."""
    return float(np.mean(np.argmax(proba, axis=1) == y))
