"""How a federation maps onto MLflow: names, tags and metric keys (see docs/design.md).

This module is the single place that knows the mapping. The tracking library, the ingester,
the server's API and the demo all import it; it imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from synergos_mlops.errors import InvalidIdError, InvalidValueError

__all__ = [
    "CLASS_STATISTICS",
    "EXPERIMENT_KIND",
    "ROLE_FEDERATION",
    "ROLE_PARTICIPANT",
    "SCALAR_STATISTICS",
    "STAGES",
    "TAG_COLLABORATION",
    "TAG_EXPERIMENT",
    "TAG_PARTICIPANT",
    "TAG_PROJECT",
    "TAG_ROLE",
    "TAG_RUN",
    "ExperimentIds",
    "LEGACY_CONNECTOR",
    "LegacyMetric",
    "epoch_key",
    "legacy_experiment_ids",
    "legacy_metric",
    "metric_key",
    "statistic_points",
    "validate_id",
]

STAGES: tuple[str, ...] = ("train", "evaluate", "predict")

TAG_COLLABORATION = "synergos.collaboration"
TAG_PROJECT = "synergos.project"
TAG_EXPERIMENT = "synergos.experiment"
TAG_RUN = "synergos.run"
TAG_PARTICIPANT = "synergos.participant"
TAG_ROLE = "synergos.role"
ROLE_FEDERATION = "federation"
ROLE_PARTICIPANT = "participant"

#: MLflow's experiment-kind tag. Without it the MLflow 3.17 UI opens an experiment in its
#: GenAI view; a federated run belongs in the classic model-training view.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

#: Synergos statistics reported as one value per class.
CLASS_STATISTICS: frozenset[str] = frozenset(
    {
        "accuracy", "roc_auc_score", "pr_auc_score", "f_score",
        "TPRs", "TNRs", "PPVs", "NPVs", "FPRs", "FNRs", "FDRs",
        "TPs", "TNs", "FPs", "FNs",
    }
)  # fmt: skip
#: Synergos statistics reported as one value.
SCALAR_STATISTICS: frozenset[str] = frozenset({"R2", "MSE", "MAE"})


def validate_id(kind: str, value: object) -> str:
    """Return ``value`` as an id, or raise :class:`InvalidIdError` naming it.

    Ids may be any printable text but ``/``, which would make the experiment name ambiguous.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{kind} id {value!r} must be a string")
    if not value or not value.strip():
        raise InvalidIdError(f"{kind} id must not be empty")
    if "/" in value:
        raise InvalidIdError(f"{kind} id {value!r} must not contain '/'")
    if not value.isprintable():
        raise InvalidIdError(f"{kind} id {value!r} must be printable text")
    return value


@dataclass(frozen=True)
class ExperimentIds:
    """The ids that name one MLflow experiment: collaboration / project / experiment."""

    collaboration: str
    project: str
    experiment: str

    def __post_init__(self) -> None:
        validate_id("collaboration", self.collaboration)
        validate_id("project", self.project)
        validate_id("experiment", self.experiment)

    @property
    def name(self) -> str:
        """The MLflow experiment name, ``{collaboration}/{project}/{experiment}``."""
        return f"{self.collaboration}/{self.project}/{self.experiment}"

    @property
    def tags(self) -> dict[str, str]:
        return {
            TAG_COLLABORATION: self.collaboration,
            TAG_PROJECT: self.project,
            TAG_EXPERIMENT: self.experiment,
            EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1],
        }

    @classmethod
    def from_name(cls, name: str) -> ExperimentIds | None:
        """The ids of an experiment name, or None when it is not a Synergos name."""
        parts = name.split("/")
        if len(parts) != 3:
            return None
        try:
            return cls(*parts)
        except InvalidIdError:
            return None


def metric_key(stage: str, name: str) -> str:
    """``{stage}/{name}``, the key of a round-level metric."""
    if stage not in STAGES:
        raise InvalidValueError(f"stage {stage!r} must be one of {', '.join(STAGES)}")
    return f"{stage}/{name}"


def epoch_key(key: str) -> str:
    """The key of the epoch-level series of a round-level key.

    ``train/loss`` -> ``train/epoch/loss``.

    Epoch-level series are kept apart from round-level ones so that both plot cleanly; their
    step grows across rounds (``round * epochs + epoch``).
    """
    stage, sep, name = key.partition("/")
    if not sep:
        return f"epoch/{key}"
    return f"{stage}/epoch/{name}"


def _as_float(key: str, value: object) -> float:
    # numpy scalars expose __float__; accept them, refuse everything else (bools too).
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise InvalidValueError(f"metric {key!r} has a non-numeric value {value!r}")
    return float(value)  # type: ignore[arg-type,unused-ignore]


def statistic_points(stage: str, statistics: Mapping[str, object]) -> Iterable[tuple[str, float]]:
    """Expand Synergos statistics into ``(key, value)`` pairs.

    A list (one value per class) becomes ``{stage}/{name}/class_{i}``; a scalar
    ``{stage}/{name}``. The class index is never the step.
    """
    for name, value in statistics.items():
        base = metric_key(stage, name)
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            for index, item in enumerate(value):
                yield f"{base}/class_{index}", _as_float(f"{base}/class_{index}", item)
        elif hasattr(value, "tolist") and not isinstance(value, (int, float)):
            listed = value.tolist()  # numpy arrays
            if isinstance(listed, list):
                for index, item in enumerate(listed):
                    yield f"{base}/class_{index}", _as_float(f"{base}/class_{index}", item)
            else:
                yield base, _as_float(base, listed)
        else:
            yield base, _as_float(base, value)


def is_finite(value: float) -> bool:
    return math.isfinite(value)


#: How the original Synergos TTP (mlflow 1.7.2) joins ids into one experiment name:
#: ``{collaboration}_>_{project}_>_{experiment}``.
LEGACY_CONNECTOR = "_>_"


def legacy_experiment_ids(name: str) -> ExperimentIds | None:
    """The ids of an experiment the original TTP named, or None for any other name."""
    parts = name.split(LEGACY_CONNECTOR)
    if len(parts) != 3:
        return None
    try:
        return ExperimentIds(*parts)
    except InvalidIdError:
        return None


@dataclass(frozen=True)
class LegacyMetric:
    """Where a metric key of the original TTP belongs in a federated run."""

    participant: str | None
    """None for the global (parent) run."""
    key: str
    unattributed: bool = False
    """The original logged per-class statistics with the class index as the step and every
    participant's and stage's values on that one step: kept as logged, attributable to no
    participant, stage or round."""


_LEGACY_LOCAL_LOSS = "_local_loss"


def legacy_metric(key: str) -> LegacyMetric:
    """Translate one metric key as the original TTP's logger wrote it.

    ``global_{stage}_loss`` -> global ``{stage}/loss``; ``{participant}_local_loss`` -> that
    participant's ``train/loss``; ``{statistic}_class_{i}`` and the scalar statistics are kept
    under their own key, marked unattributed; any other key stays as it is on the global run.
    """
    head, _, rest = key.partition("_")
    if head == "global" and rest.endswith("_loss") and rest[: -len("_loss")] in STAGES:
        return LegacyMetric(None, metric_key(rest[: -len("_loss")], "loss"))
    if key.endswith(_LEGACY_LOCAL_LOSS) and len(key) > len(_LEGACY_LOCAL_LOSS):
        participant = key[: -len(_LEGACY_LOCAL_LOSS)]
        try:
            return LegacyMetric(validate_id("participant", participant), "train/loss")
        except InvalidIdError:
            return LegacyMetric(None, key)
    if is_legacy_statistic(key):
        return LegacyMetric(None, key, unattributed=True)
    return LegacyMetric(None, key)


def is_legacy_statistic(key: str) -> bool:
    """``{statistic}_class_{i}`` or a scalar statistic, as the original TTP logged them."""
    if key in SCALAR_STATISTICS:
        return True
    name, sep, index = key.rpartition("_class_")
    return bool(sep) and name in CLASS_STATISTICS and index.isdigit()
