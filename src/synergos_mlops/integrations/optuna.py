"""An Optuna callback that logs each finished trial as a trial of a Synergos study.

::

    import optuna
    from synergos_mlops import FederatedTracker
    from synergos_mlops.integrations.optuna import SynergosCallback

    tracker = FederatedTracker("http://localhost:5500")
    callback = SynergosCallback(tracker, "c", "p", "e", "lr search", "evaluate/accuracy")
    optuna.create_study(direction="maximize").optimize(objective, n_trials=20,
                                                       callbacks=[callback])

In the style of optuna-integration's ``MLflowCallback``: Optuna calls it with the study and
the frozen trial once the trial has finished. The Synergos study is defined on the first call,
from ``search_space`` if given, else from that trial's distributions, with the Optuna study's
direction; a later trial that suggests parameters the study lacks (a conditional space, or
another worker's branch) extends it to the union. Each trial becomes a federated run with the
trial's params as hyperparameters (their types kept), Optuna's trial number recorded beside
the Synergos one, its intermediate values under ``metric`` at their steps and its value after
them, ended FINISHED (COMPLETE), FAILED (FAIL) or KILLED (PRUNED). The callback never raises
into the Optuna study (see :attr:`SynergosCallback.failures`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from synergos_mlops.errors import InvalidValueError

if TYPE_CHECKING:
    import optuna

    from synergos_mlops.tracking import FederatedTracker, Study

__all__ = ["SynergosCallback", "search_space_of"]

_STATES = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED"}
_log = logging.getLogger(__name__)


def search_space_of(distributions: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Optuna distributions as an NNI search space (the Synergos study's definition)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space: dict[str, dict[str, Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            space[name] = {"_type": "choice", "_value": list(dist.choices)}
        elif isinstance(dist, IntDistribution):
            space[name] = {"_type": "randint", "_value": [dist.low, dist.high + 1]}
        elif isinstance(dist, FloatDistribution) and dist.log:
            space[name] = {"_type": "loguniform", "_value": [dist.low, dist.high]}
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            space[name] = {"_type": "quniform", "_value": [dist.low, dist.high, dist.step]}
        elif isinstance(dist, FloatDistribution):
            space[name] = {"_type": "uniform", "_value": [dist.low, dist.high]}
        else:
            raise InvalidValueError(f"Optuna distribution {dist!r} of {name!r} is not known")
    return space


class SynergosCallback:
    """Log each finished Optuna trial as a trial (a federated run) of a Synergos study.

    It never raises into the Optuna study: a trial it could not log is counted in
    :attr:`failures`, the first such failure (and each new kind) is logged as a warning, and
    the study goes on; metric points the server could not take wait in the tracker's spool.
    """

    def __init__(
        self,
        tracker: FederatedTracker,
        collaboration: str,
        project: str,
        experiment: str,
        study_name: str,
        metric: str,
        *,
        search_space: Mapping[str, Any] | None = None,
        participants: Iterable[str] = (),
    ) -> None:
        self._tracker = tracker
        self._ids = (collaboration, project, experiment)
        self._name = study_name
        self._metric = metric
        self._space = dict(search_space) if search_space is not None else None
        self._participants = list(participants)
        self._study: Study | None = None
        #: Finished Optuna trials this callback could not log, and why (the last reason).
        self.failures = 0
        self.last_failure: str | None = None
        self._reported: set[str] = set()

    def _synergos_study(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Study:
        """The Synergos study, defined on the first call; a trial that suggests parameters
        the study does not search yet (another branch of a conditional space, perhaps first
        seen by another worker) extends it: its space is the union of what trials suggested."""
        if len(study.directions) != 1:
            raise InvalidValueError("a Synergos study has one metric: not multi-objective")
        space = self._space if self._space is not None else search_space_of(trial.distributions)
        if self._study is None or not set(space) <= set(self._study.search_space):
            direction = "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
            self._study = self._tracker.study(
                *self._ids, self._name, space, self._metric, direction, extend=True
            )
        return self._study

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        status = _STATES.get(trial.state.name)
        if status is None:  # RUNNING or WAITING: not finished, nothing to log yet
            return
        try:
            self._log(study, trial, status)
        except Exception as exc:  # noqa: BLE001 - a tuner callback never ends the user's study
            self.failures += 1
            self.last_failure = f"{type(exc).__name__}: {exc}"
            kind = type(exc).__name__
            if kind not in self._reported:
                self._reported.add(kind)
                _log.warning(
                    "Synergos study %r: Optuna trial %d was not logged (%s); the study goes "
                    "on, SynergosCallback.failures counts such trials",
                    self._name, trial.number, self.last_failure,
                )  # fmt: skip

    def _log(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, status: str) -> None:
        target = self._synergos_study(study, trial)
        with target.trial(dict(trial.params), participants=self._participants,
                          tuner="optuna", tuner_trial=trial.number) as run:  # fmt: skip
            steps = sorted(trial.intermediate_values)
            for step in steps:
                run.log_metrics({self._metric: trial.intermediate_values[step]}, step=step)
            if trial.value is not None:
                final_step = steps[-1] + 1 if steps else 0
                run.log_metrics({self._metric: trial.value}, step=final_step)
            run.end(status)
