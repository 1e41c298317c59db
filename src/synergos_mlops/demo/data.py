"""The demo's data: a data set that scikit-learn ships, split the way a federation holds it.

The orchestrator keeps a held-out test set; each participant holds a shard whose class mix
differs from the others' (label skew drawn from a Dirichlet distribution, the usual way to
make federated data non-IID), split again into local training and local evaluation parts.
Nothing is downloaded: ``load_digits`` reads a file inside the scikit-learn package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from synergos_mlops.errors import InvalidValueError

__all__ = [
    "DATASET",
    "MAX_PARTICIPANTS",
    "FederatedData",
    "Shard",
    "load_federated_data",
    "participant_ids",
]

#: The data set the demo trains on (8x8 images of handwritten digits, 10 classes).
DATASET = "sklearn.datasets.load_digits"
#: Pixel intensities run from 0 to 16; a fixed scale keeps features in [0, 1] without any
#: participant sharing statistics of its data.
_PIXEL_MAX = 16.0
_TEST_FRACTION = 0.2
_LOCAL_EVALUATION_FRACTION = 0.2
#: Each participant holds at least this many samples, so every shard can train and evaluate.
MIN_SHARD = 40
#: The most participants the data set serves with MIN_SHARD samples each.
MAX_PARTICIPANTS = 20


@dataclass(frozen=True)
class Shard:
    """One participant's data: local training and local evaluation parts."""

    participant: str
    x_train: NDArray[np.float64]
    y_train: NDArray[np.int64]
    x_evaluate: NDArray[np.float64]
    y_evaluate: NDArray[np.int64]

    @property
    def samples(self) -> int:
        """The number of local training samples (the participant's aggregation weight)."""
        return len(self.y_train)

    def class_counts(self, n_classes: int) -> list[int]:
        counts = np.bincount(np.concatenate([self.y_train, self.y_evaluate]), minlength=n_classes)
        return [int(c) for c in counts]


@dataclass(frozen=True)
class FederatedData:
    """The participants' shards and the orchestrator's held-out test set."""

    shards: tuple[Shard, ...]
    x_test: NDArray[np.float64]
    y_test: NDArray[np.int64]
    classes: NDArray[np.int64]
    feature_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return self.x_test.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def participant_ids(participants: int) -> list[str]:
    """``worker_1``, ``worker_2``, ... as Synergos names its workers."""
    return [f"worker_{index}" for index in range(1, participants + 1)]


def _split_label_skew(
    labels: NDArray[np.int64], participants: int, alpha: float, rng: np.random.Generator
) -> list[NDArray[np.int64]]:
    """Indices for each participant: every class is divided in Dirichlet(alpha) proportions.

    Small alpha gives each participant a few dominant classes. Draws are repeated until every
    participant holds at least MIN_SHARD samples.
    """
    classes = np.unique(labels)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(participants)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(participants, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                part.extend(int(i) for i in chunk)
        if min(len(part) for part in parts) >= MIN_SHARD:
            return [rng.permutation(np.asarray(part, dtype=np.int64)) for part in parts]
    raise InvalidValueError(  # pragma: no cover - only for extreme settings
        f"cannot give each of {participants} participants {MIN_SHARD} samples"
    )


def load_federated_data(participants: int, *, seed: int, alpha: float = 0.5) -> FederatedData:
    """Load the digits, keep a stratified test set, and shard the rest across participants."""
    if not 1 <= participants <= MAX_PARTICIPANTS:
        raise InvalidValueError(
            f"participants must be between 1 and {MAX_PARTICIPANTS}, not {participants}"
        )
    if not alpha > 0:
        raise InvalidValueError(f"alpha must be positive, not {alpha}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64) / _PIXEL_MAX
    y = np.asarray(digits.target, dtype=np.int64)
    rng = np.random.default_rng(seed)

    # Stratified held-out test set, kept by the orchestrator.
    test_mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test_mask[members[: round(len(members) * _TEST_FRACTION)]] = True
    x_pool, y_pool = x[~test_mask], y[~test_mask]

    shards = []
    for participant, indices in zip(
        participant_ids(participants),
        _split_label_skew(y_pool, participants, alpha, rng),
        strict=True,
    ):
        n_evaluate = max(1, round(len(indices) * _LOCAL_EVALUATION_FRACTION))
        train, evaluate = indices[n_evaluate:], indices[:n_evaluate]
        shards.append(
            Shard(participant, x_pool[train], y_pool[train], x_pool[evaluate], y_pool[evaluate])
        )
    return FederatedData(
        shards=tuple(shards),
        x_test=x[test_mask],
        y_test=y[test_mask],
        classes=np.unique(y),
        feature_names=tuple(str(name) for name in digits.feature_names),
    )
