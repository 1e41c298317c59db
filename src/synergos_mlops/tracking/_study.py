"""Study and its trials: hyperparameter tuning logged as federated runs of one experiment."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import ExperimentIds, validate_id
from synergos_mlops.studies import StudyDefinition, outside_space, param_types, types_tag
from synergos_mlops.tracking._run import FederatedRun
from synergos_mlops.tracking._transport import Resolved

if TYPE_CHECKING:
    from synergos_mlops.tracking._tracker import FederatedTracker

__all__ = ["QueuedTrial", "Study", "TrialRun"]


class TrialRun(FederatedRun):
    """A trial being run: the usual federated run, with its study, number and whether its
    hyperparameters lie outside the search space."""

    study: str
    number: int
    outside_space: tuple[str, ...]


@dataclass(frozen=True)
class QueuedTrial:
    """A trial waiting to run (its run is SCHEDULED): run it with
    ``study.trial(hyperparameters, run=queued.run)``."""

    study: str
    run: str
    number: int
    run_id: str
    hyperparameters: dict[str, Any]
    outside_space: tuple[str, ...]


class Study:
    """A hyperparameter-tuning study of one experiment; made by
    :meth:`FederatedTracker.study`."""

    def __init__(
        self, tracker: FederatedTracker, ids: ExperimentIds, definition: StudyDefinition
    ) -> None:
        self._tracker = tracker
        self.ids = ids
        self.definition = definition

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def search_space(self) -> dict[str, dict[str, Any]]:
        return self.definition.search_space

    @property
    def metric(self) -> str:
        return self.definition.metric

    @property
    def direction(self) -> str:
        return self.definition.direction

    @overload
    def trial(
        self, hyperparameters: Mapping[str, Any], *, run: str | None = ...,
        queued: Literal[False] = ..., participants: Iterable[str] = ...,
        epochs_per_round: int | None = ..., tuner: str | None = ...,
        tuner_trial: int | str | None = ...,
    ) -> TrialRun: ...  # fmt: skip

    @overload
    def trial(
        self, hyperparameters: Mapping[str, Any], *, run: str | None = ...,
        queued: Literal[True], participants: Iterable[str] = ...,
        epochs_per_round: int | None = ..., tuner: str | None = ...,
        tuner_trial: int | str | None = ...,
    ) -> QueuedTrial: ...  # fmt: skip

    def trial(
        self,
        hyperparameters: Mapping[str, Any],
        *,
        run: str | None = None,
        queued: bool = False,
        participants: Iterable[str] = (),
        epochs_per_round: int | None = None,
        tuner: str | None = None,
        tuner_trial: int | str | None = None,
    ) -> TrialRun | QueuedTrial:
        """Start a trial: a federated run of the study's experiment, numbered within the
        study (run id ``<study>_run_<n>`` unless ``run`` names one), with these
        hyperparameters. Use the answer like ``tracker.run(...)``'s.

        ``queued=True`` only records the trial, SCHEDULED, and answers a QueuedTrial; a later
        ``trial(..., run=queued.run)`` runs it (RUNNING, its clock starting then). A trial
        whose hyperparameters lie outside the search space is logged and flagged (tag
        ``synergos.trial.outside_space``), not refused. Each hyperparameter's type is kept
        beside it (tag ``synergos.param_types``), so the study API and compare answer the value
        and type given here (``True``, not ``"True"``; ``"null"``, not ``None``). ``tuner`` and
        ``tuner_trial`` record the tuner's own trial (``"optuna"`` and its number, ``"ray"``
        and its trial id), shown beside the study's own number.
        """
        tracker = self._tracker
        tracker._check_open()
        if not isinstance(hyperparameters, Mapping):
            raise InvalidValueError("hyperparameters must be a mapping of name to value")
        if run is not None:
            validate_id("run", run)
        listed = [validate_id("participant", p) for p in participants]
        texts, _ = tracker._params(hyperparameters)
        outside = tuple(outside_space(self.search_space, hyperparameters))
        if (tuner is None) != (tuner_trial is None):
            raise InvalidValueError("tuner and tuner_trial go together")
        types = param_types(hyperparameters, texts)
        request: dict[str, Any] = {
            "study": self.name, "run": run, "participants": [] if queued else listed,
            "user": tracker._user, "queued": queued, "outside": list(outside),
            # One id per call, the same on every retry: a retry whose first answer was lost
            # finds the trial that first try numbered instead of numbering another.
            "request": uuid.uuid4().hex if run is None else None,
            "types": types if types_tag(types) is not None else None,
        }  # fmt: skip
        if tuner is not None:
            request["tuner"] = {"tuner": tuner, "trial": tuner_trial}
        answers: dict[str, Any] = {}

        def resolve() -> tuple[str, Resolved]:
            answer = tracker._transport.resolve_trial(self.ids, request)
            answers.update(answer)
            return str(answer["run"]), Resolved(answer)

        def make(*args: Any) -> TrialRun:
            trial = TrialRun(*args)
            trial.study = self.name
            trial.number = int(answers["number"])
            trial.outside_space = outside
            return trial

        started = tracker._start(self.ids, resolve, hyperparameters, epochs_per_round, make)
        if not queued:
            return started
        return QueuedTrial(
            self.name, started.run, started.number, started.run_id, dict(hyperparameters),
            outside,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Study({self.ids.name!r}, {self.name!r}, {self.metric!r}, {self.direction!r})"
