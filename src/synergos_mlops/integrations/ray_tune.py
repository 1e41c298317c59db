"""A Ray Tune logger callback that logs each Ray trial as a trial of a Synergos study.

::

    from ray import tune
    from synergos_mlops.integrations.ray_tune import SynergosLoggerCallback

    space = {"lr": tune.loguniform(1e-4, 1e-1), "mu": tune.choice([0.0, 0.1])}
    callback = SynergosLoggerCallback("http://localhost:5500", "c", "p", "e", "lr search",
                                      "evaluate/accuracy", space, direction="maximize")
    tune.Tuner(trainable, param_space=space,
               run_config=tune.RunConfig(callbacks=[callback])).fit()

In the style of Ray's own ``MLflowLoggerCallback``: Ray calls it in the driver process, which
holds the tracker; the trainables never talk to Synergos. On a trial's start the Synergos study
is defined (on the first trial) and the trial becomes a federated run of it, RUNNING, with the
trial's config (nested keys joined with ``/``) as hyperparameters. Each reported result is
flattened the same way and its numbers are logged at step ``round`` if the trainable reports
one, else Ray's ``training_iteration`` (1, 2, ...); Ray's own keys (``time_total_s``,
``timestamp``, ``pid``, ``config``, ...) and values that are not numbers are left out. A key
``participants/<participant>/<metric>`` (or the nested ``{"participants": {participant:
{metric: value}}}``) is that participant's value of ``metric``. On the trial's end the run ends
FINISHED, or FAILED when the trainable raised; runs still open when the experiment ends end
KILLED. Ray's trial id is recorded beside the Synergos trial number. The callback never
raises into Ray's experiment: a hook whose logging failed is counted in ``failures`` and the
first failure of each kind is logged as a warning. Which run each Ray trial is goes into
Tune's experiment checkpoint, so after ``Tuner.restore`` a resumed trial goes on in its run
(a trial restarted with ``restart_errored`` is a new Ray trial, so a new Synergos trial).

Unlike the Optuna callback, this one takes the tracker's target (a server URL or a store
folder) rather than a tracker: ``tune.Tuner`` pickles its callbacks (for ``Tuner.restore``),
and a tracker (threads, an open spool) cannot be pickled. The callback opens its tracker in
``setup`` (the driver, when ``fit`` starts) and closes it when the experiment ends.

The search space is NNI's (as every Synergos study's), or the Tuner's own ``param_space``,
translated by :func:`search_space_of` where NNI has the same distribution.
"""

from __future__ import annotations

import functools
import json
import logging
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ray.tune.logger import LoggerCallback

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.studies import validate_search_space

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from synergos_mlops.tracking import FederatedTracker, Study, TrackerConfig, TrialRun

__all__ = ["PARTICIPANTS_KEY", "ROUND_KEY", "SynergosLoggerCallback", "search_space_of"]

#: The result key whose value is the step (the federated round) of the other values.
ROUND_KEY = "round"
#: The result key under which participants' values are reported: ``participants/<id>/<key>``.
PARTICIPANTS_KEY = "participants"
_log = logging.getLogger(__name__)
_DIRECTIONS = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}/")
        else:
            yield name, value


def _json_value(where: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{where}: {value!r} is not a JSON value") from None
    return value


def _domain_entry(name: str, domain: Any) -> dict[str, Any]:
    """One Ray Tune domain as an NNI search-space entry, where NNI has the same one."""
    from ray.tune.search import sample

    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, sample.Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, sample.Categorical):
        options = [_json_value(f"choice of {name!r}", option) for option in domain.categories]
        return {"_type": "choice", "_value": options}
    if isinstance(domain, sample.Float) and isinstance(sampler, sample.Normal):
        kind, bounds = "normal", [sampler.mean, sampler.sd]
    elif isinstance(domain, sample.Float) and isinstance(sampler, sample.LogUniform):
        kind, bounds = "loguniform", [domain.lower, domain.upper]
    elif isinstance(domain, sample.Float) and isinstance(sampler, sample.Uniform):
        kind, bounds = "uniform", [domain.lower, domain.upper]
    elif isinstance(domain, sample.Integer) and isinstance(sampler, sample.Uniform) and q is None:
        return {"_type": "randint", "_value": [domain.lower, domain.upper]}  # [low, high)
    else:
        raise InvalidValueError(
            f"Ray Tune domain {domain!r} of {name!r} has no NNI equivalent here; pass the "
            "search space in NNI's format instead"
        )
    if q is None:
        return {"_type": kind, "_value": bounds}
    return {"_type": f"q{kind}", "_value": [*bounds, q]}


def search_space_of(param_space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A Tuner's ``param_space`` as an NNI search space (the Synergos study's definition).

    ``tune.choice`` and ``tune.grid_search`` become ``choice``; ``tune.uniform``,
    ``tune.loguniform``, ``tune.randn`` and their ``q`` forms become ``uniform``,
    ``loguniform``, ``normal`` and ``quniform``, ``qloguniform``, ``qnormal``;
    ``tune.randint`` becomes ``randint`` (both exclude the upper bound). Nested dicts are
    searched under ``outer/inner`` names; constants are not searched and are left out; an entry
    already in NNI's form (``{"_type", "_value"}``) is kept. Any other domain
    (``tune.lograndint``, ``tune.qrandint``, ``tune.sample_from``, ...) raises
    InvalidValueError: give the search space in NNI's format then.
    """
    from ray.tune.search.sample import Domain

    if not isinstance(param_space, Mapping):
        raise InvalidValueError("param_space must be a mapping of name to value or domain")
    space: dict[str, dict[str, Any]] = {}

    def walk(values: Mapping[str, Any], prefix: str) -> None:
        for key, value in values.items():
            name = f"{prefix}{key}"
            if isinstance(value, Domain):
                space[name] = _domain_entry(name, value)
            elif isinstance(value, Mapping) and set(value) == {"grid_search"}:
                options = [_json_value(f"grid_search of {name!r}", v) for v in value["grid_search"]]
                space[name] = {"_type": "choice", "_value": options}
            elif isinstance(value, Mapping) and set(value) == {"_type", "_value"}:
                space[name] = dict(value)
            elif isinstance(value, Mapping):
                walk(value, f"{name}/")

    walk(param_space, "")
    return validate_search_space(space)


def _result_keys_of_ray() -> frozenset[str]:
    from ray.tune import result

    return frozenset(
        [*result.AUTO_RESULT_KEYS, result.DONE, result.TRIAL_ID, result.EXPERIMENT_TAG,
         result.SHOULD_CHECKPOINT, "trial_info"]
    )  # fmt: skip


class SynergosLoggerCallback(LoggerCallback):
    """Log each Ray Tune trial as a trial (a federated run) of a Synergos study.

    ``target`` and ``config`` are :class:`~synergos_mlops.FederatedTracker`'s (a server URL,
    a store folder, or None for ``$MLFLOW_TRACKING_URI``); the tracker is opened in the
    driver when the experiment starts. ``search_space`` is NNI's or the Tuner's
    ``param_space`` (see :func:`search_space_of`); ``direction`` is ``maximize`` or
    ``minimize`` (Ray's ``max`` and ``min`` too). ``participants`` get their runs when each
    trial starts; a participant first seen in a result gets its run then.
    After (or during) ``fit``, :attr:`runs` maps each Ray trial id to its Synergos run id.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | None,
        collaboration: str,
        project: str,
        experiment: str,
        study_name: str,
        metric: str,
        search_space: Mapping[str, Any] | str,
        *,
        direction: str = "maximize",
        participants: Iterable[str] = (),
        config: TrackerConfig | None = None,
        user: str | None = None,
    ) -> None:
        if direction not in _DIRECTIONS:
            raise InvalidValueError(f"direction {direction!r} must be maximize or minimize")
        self._target = target
        self._ids = (collaboration, project, experiment)
        self._name = study_name
        self._metric = metric
        self._direction = _DIRECTIONS[direction]
        if isinstance(search_space, str):
            self._space = validate_search_space(search_space)
        else:
            self._space = search_space_of(search_space)
        self._participants = list(participants)
        self._ray_keys = _result_keys_of_ray()
        self._config = config
        self._user = user
        self.runs: dict[str, str] = {}
        self._tracker: FederatedTracker | None = None
        self._study: Study | None = None
        self._open: dict[str, TrialRun] = {}
        #: Hooks whose logging failed (the experiment went on), and the last reason.
        self.failures = 0
        self.last_failure: str | None = None
        self._reported: set[str] = set()

    @property
    def search_space(self) -> dict[str, dict[str, Any]]:
        """The Synergos study's search space, in NNI's format."""
        return self._space

    def __getstate__(self) -> dict[str, Any]:
        # Tuner pickles its callbacks; the tracker and the open runs stay in this process.
        state = dict(self.__dict__)
        state.update(_tracker=None, _study=None, _open={})
        return state

    # Ray's hooks ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Kept in Tune's experiment checkpoint: which run each Ray trial is."""
        return {"runs": dict(self.runs)}

    def set_state(self, state: dict[str, Any]) -> None:
        """On ``Tuner.restore``: a resumed trial goes on in the run it had."""
        self.runs.update(state.get("runs", {}))

    def setup(self, *args: Any, **info: Any) -> None:
        from synergos_mlops.tracking import FederatedTracker

        if self._tracker is None:
            self._tracker = FederatedTracker(self._target, self._config, user=self._user)

    def log_trial_start(self, trial: Trial) -> None:
        self._guarded(trial, "start", lambda: self._trial_run(trial))

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        self._guarded(trial, "result", lambda: self._log_result(trial, result))

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        self._guarded(trial, "end", lambda: self._end(trial, failed))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial_id in list(self._open):
            self._guarded(None, "end", functools.partial(self._open.pop(trial_id).end, "KILLED"))
        if self._tracker is not None:
            tracker, self._tracker, self._study = self._tracker, None, None
            self._guarded(None, "close", tracker.close)

    # Ours ----------------------------------------------------------------------------------

    def _guarded(self, trial: Trial | None, what: str, work: Callable[[], object]) -> None:
        """Run one hook's work; a failure is counted and (first of its kind) logged, never
        raised into Ray's experiment."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - a tuner callback never ends the user's study
            self.failures += 1
            self.last_failure = f"{type(exc).__name__}: {exc}"
            kind = type(exc).__name__
            if kind not in self._reported:
                self._reported.add(kind)
                _log.warning(
                    "Synergos study %r: Ray trial %s's %s was not logged (%s); the experiment "
                    "goes on, SynergosLoggerCallback.failures counts such failures",
                    self._name, trial.trial_id if trial is not None else "-", what,
                    self.last_failure,
                )  # fmt: skip

    def _log_result(self, trial: Trial, result: dict[str, Any]) -> None:
        run = self._trial_run(trial)
        step = result.get(ROUND_KEY)
        if step is None:
            step = result["training_iteration"]
        overall: dict[str, Any] = {}
        by_participant: dict[str, dict[str, Any]] = {}
        reported = {k: v for k, v in result.items() if k not in self._ray_keys and k != ROUND_KEY}
        for key, value in _flatten(reported):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                continue
            if key.startswith(f"{PARTICIPANTS_KEY}/"):
                parts = key.split("/", 2)
                if len(parts) != 3 or not parts[1] or not parts[2]:
                    raise InvalidValueError(
                        f"result key {key!r} must be {PARTICIPANTS_KEY}/<participant>/<metric>"
                    )
                by_participant.setdefault(parts[1], {})[parts[2]] = value
            else:
                overall[key] = value
        if overall:
            run.log_metrics(overall, step=step)
        for participant, values in by_participant.items():
            run.log_metrics(values, step=step, participant=participant)

    def _end(self, trial: Trial, failed: bool) -> None:
        if trial.trial_id not in self.runs:  # ended before it started: still a trial
            self._trial_run(trial)
        run = self._open.pop(trial.trial_id, None)
        if run is not None:
            run.end("FAILED" if failed else "FINISHED")

    def _synergos_study(self) -> Study:
        if self._tracker is None:
            self.setup()
        assert self._tracker is not None
        if self._study is None:
            self._study = self._tracker.study(
                *self._ids, self._name, self._space, self._metric, self._direction
            )
        return self._study

    def _trial_run(self, trial: Trial) -> TrialRun:
        """The open run of this Ray trial; a trial started again (a retry, a restore) goes on
        in the run it had."""
        run = self._open.get(trial.trial_id)
        if run is None:
            study = self._synergos_study()
            hyperparameters = dict(_flatten(trial.config))
            run = study.trial(
                hyperparameters, run=self.runs.get(trial.trial_id),
                participants=self._participants, tuner="ray", tuner_trial=trial.trial_id,
            )  # fmt: skip
            self._open[trial.trial_id] = run
            self.runs[trial.trial_id] = run.run
        return run
