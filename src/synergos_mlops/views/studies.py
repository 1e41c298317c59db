"""Studies and run comparisons as the Synergos API shows them, read from MLflow's stores.

Only reads. Parameter importance is scikit-learn's (a random forest's impurity importance
over the finished trials), never computed by hand here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from synergos_mlops.federation import ExperimentIds
from synergos_mlops.storage import reads
from synergos_mlops.storage import studies as stored
from synergos_mlops.studies import (
    DEFAULT_STUDY,
    TAG_PARAM_TYPES,
    StudyDefinition,
    decode_params,
    json_safe,
    outside_space,
    read_types,
    same_value,
    validate_study_name,
)
from synergos_mlops.views.federated_runs import (
    Backend,
    FederatedRun,
    NotFoundError,
    iso_time,
    missing_level,
    run_series,
)

__all__ = ["STATES", "compare_runs", "list_studies", "param_importance", "study_detail"]

STATES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")
#: Keys where lower is better, when a study (the default one) does not say.
_LOWER = ("loss", "mse", "mae", "error")
IMPORTANCE_METHOD = "scikit-learn RandomForestRegressor impurity importance (finished trials)"

#: Whether the asking account sees a participant: (collaboration, participant) -> bool.
SeesParticipant = Callable[[str, str], bool]


def _everyone(_collaboration: str, _participant: str) -> bool:
    return True


def _experiment(backend: Backend, ids: ExperimentIds) -> str:
    experiment_id = reads.find_experiment(backend.session_maker, ids.name)
    if experiment_id is None:
        raise NotFoundError(missing_level(backend, ids))
    return experiment_id


def _guess_metric(backend: Backend, parents: list[str]) -> str | None:
    keys = {p.key for p in reads.latest_metrics(backend.session_maker, parents)}
    for wanted in ("evaluate/accuracy", "evaluate/loss", "train/loss"):
        if wanted in keys:
            return wanted
    plain = sorted(k for k in keys if "/class_" not in k and "/epoch/" not in k)
    return plain[0] if plain else None


def list_studies(
    backend: Backend, keep: Callable[[reads.ExperimentRow], bool] = lambda _e: True
) -> list[dict[str, Any]]:
    """Every study of the experiments ``keep`` keeps: definition, trial count and counts by
    state. The studied experiments are found first, from the definitions' and the trials'
    own tags, and only they are read: the cost follows the studies, not the experiments the
    store holds."""
    definitions = stored.study_definitions(backend.session_maker, None)
    trials_of = stored.trial_rows_of(backend.session_maker, None, counted=False)
    studied = set(definitions) | {e for e, trials in trials_of.items() if trials}
    experiments = [e for e in reads.synergos_experiments(backend.session_maker, ids=studied)
                   if keep(e)]  # fmt: skip
    out = []
    for experiment in sorted(experiments, key=lambda e: (e.collaboration, e.project,
                                                         e.experiment)):  # fmt: skip
        defined = definitions.get(experiment.experiment_id, {})
        trials = trials_of.get(experiment.experiment_id, [])
        names = sorted(set(defined) | {t.study for t in trials})
        for name in names:
            own = [t for t in trials if t.study == name]
            definition = defined.get(name)
            counts = dict.fromkeys(STATES, 0)
            for trial in own:
                counts[trial.run.status or "RUNNING"] = counts.get(trial.run.status or "", 0) + 1
            out.append({
                "collaboration": experiment.collaboration,
                "project": experiment.project,
                "experiment": experiment.experiment,
                "study": name,
                "defined": definition is not None,
                "metric": definition.metric if definition else None,
                "direction": definition.direction if definition else None,
                "trial_count": len(own),
                "counts": counts,
            })  # fmt: skip
    return out


#: A parameter a trial does not have (a branch of a conditional space it did not take).
_ABSENT = object()


def _numeric_column(values: list[Any]) -> list[float] | None:
    out = []
    for value in values:
        if value is _ABSENT:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return None
        out.append(float(value))
    return out if out else None


def param_importance(
    names: Sequence[str],
    rows: Sequence[dict[str, Any]],
    values: Sequence[float],
    space: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """How much each hyperparameter explains the metric over these trials: the impurity
    importance of a scikit-learn random forest fitted to them, summed over a categorical
    parameter's one-hot columns, normalised to sum 1. Log-scaled search-space entries are
    fitted on their logarithm. A parameter some trials do not have (a conditional space) gets
    an "absent" column, and its absent values sit below its range. Needs two trials and a
    parameter that varies."""
    import numpy as np

    answer: dict[str, Any] = {"method": IMPORTANCE_METHOD, "trials_used": len(rows), "params": {}}
    varying = [n for n in names if len({_level(r.get(n, _ABSENT)) for r in rows}) > 1]
    if len(rows) < 2 or not varying:
        answer["note"] = "needs at least two finished trials with a value and a varying parameter"
        return answer
    columns: list[list[float]] = []
    owner: list[str] = []
    for name in varying:
        raw = [row.get(name, _ABSENT) for row in rows]
        numeric = _numeric_column(raw)
        if numeric is not None:
            kind = (space or {}).get(name, {}).get("_type", "")
            log = "log" in kind and all(v > 0 for v in numeric)
            scale = [math.log(v) for v in numeric] if log else numeric
            low, high = min(scale), max(scale)
            below = low - (high - low or 1.0)
            column = iter(scale)
            columns.append([below if v is _ABSENT else next(column) for v in raw])
            owner.append(name)
            if any(v is _ABSENT for v in raw):
                columns.append([1.0 if v is _ABSENT else 0.0 for v in raw])
                owner.append(name)
            continue
        for level in sorted({_level(v) for v in raw}):
            columns.append([1.0 if _level(v) == level else 0.0 for v in raw])
            owner.append(name)
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=64, random_state=0)
    forest.fit(np.array(columns, dtype=float).T, np.array(values, dtype=float))
    totals = dict.fromkeys(varying, 0.0)
    for name, weight in zip(owner, forest.feature_importances_, strict=True):
        totals[name] += float(weight)
    whole = sum(totals.values())
    if whole <= 0:
        answer["note"] = "the metric does not vary over these trials"
        answer["params"] = dict.fromkeys(varying, 0.0)
        return answer
    answer["params"] = dict(
        sorted(((k, v / whole) for k, v in totals.items()), key=lambda item: -item[1])
    )
    return answer


def _level(value: Any) -> str:
    """A categorical level: the value with its type (True, "True" and 1 are three levels)."""
    return "<absent>" if value is _ABSENT else f"{type(value).__name__}:{value!r}"


def _total(figures: list[float | None]) -> float | None:
    known = [f for f in figures if f is not None]
    return sum(known) if known else None


#: A trial's cost figures: summed over its participants.
_COST_FIGURES = ("cpu_seconds", "memory_peak_megabytes", "gpu_seconds", "network_megabytes")


def _trial_cost(own: dict[str, stored.ParticipantHardware]) -> dict[str, Any] | None:
    """A trial's hardware cost from its participants' samples: each figure summed over the
    participants (None when none has it), each participant's figures, and the participant
    that cost most (by GPU-seconds when any participant has a GPU, else CPU-seconds)."""
    if not own:
        return None
    participants = {
        p: {"samples": h.samples, "wall_time_s": h.wall_time_s,
            **{f: getattr(h, f) for f in _COST_FIGURES}}
        for p, h in sorted(own.items())
    }  # fmt: skip
    answer: dict[str, Any] = {
        f: _total([v[f] for v in participants.values()]) for f in _COST_FIGURES
    }
    answer["samples"] = sum(h.samples for h in own.values())
    by = "gpu_seconds" if answer["gpu_seconds"] is not None else "cpu_seconds"
    ranked = [(p, v[by]) for p, v in participants.items() if v[by] is not None]
    answer["costliest"] = None
    if ranked:
        name, figure = max(ranked, key=lambda item: item[1])
        answer["costliest"] = {"participant": name, "by": by, "value": figure}
    answer["participants"] = participants
    return answer


def study_detail(
    backend: Backend,
    ids: ExperimentIds,
    study: str,
    *,
    sees: SeesParticipant = _everyone,
    scoped: bool = False,
    metric: str | None = None,
) -> dict[str, Any]:
    """A study: definition, trials, counts by state, best trial, history, importance.

    ``sees`` narrows every participant figure (final values, spread, hardware) to the
    participants the account sees; ``scoped`` says so in the answer."""
    validate_study_name(study)
    experiment_id = _experiment(backend, ids)
    sm = backend.session_maker
    definition: StudyDefinition | None = (
        stored.study_definitions(sm, [experiment_id]).get(experiment_id, {}).get(study)
    )
    trials = sorted(
        (t for t in stored.trial_rows(sm, experiment_id) if t.study == study),
        key=lambda t: (t.number, t.run.start_time or 0),
    )
    if definition is None and not trials:
        raise NotFoundError(f"study {study!r} not found in experiment {ids.name!r}")
    parents = [t.run.run_uuid for t in trials]
    key = metric or (definition.metric if definition else None) or _guess_metric(backend, parents)
    if definition is not None:
        direction = definition.direction
    else:
        lower = key is not None and key.rsplit("/", 1)[-1].lower().endswith(_LOWER)
        direction = "minimize" if lower else "maximize"
    params = stored.trial_params(sm, parents)
    children = [
        (parent, child, participant)
        for parent, child, participant in stored.participant_rows(sm, parents)
        if sees(ids.collaboration, participant)
    ]
    values = stored.latest_values(sm, parents + [c for _, c, _ in children], key) if key else {}
    now = int(time.time() * 1000)
    costs = stored.trial_hardware(sm, [c for _, c, _ in children], now)
    by_parent: dict[str, dict[str, float | None]] = {}
    hardware_of: dict[str, dict[str, stored.ParticipantHardware]] = {}
    for parent, child, participant in children:
        by_parent.setdefault(parent, {})[participant] = values.get(child)
        if child in costs:
            hardware_of.setdefault(parent, {})[participant] = costs[child]
    worse = min if direction == "maximize" else max
    rows: list[dict[str, Any]] = []
    decoded: dict[str, dict[str, Any]] = {}
    for trial in trials:
        run = trial.run
        hyper, kinds = decode_params(params.get(run.run_uuid, {}), trial.types)
        decoded[run.run_uuid] = hyper
        if trial.outside is not None:
            outside = list(trial.outside)
        elif trial.types is not None or definition is None:
            outside = []  # checked with its types when logged: inside
        else:
            outside = outside_space(definition.search_space, hyper, lenient=True)
        local = dict(sorted(by_parent.get(run.run_uuid, {}).items()))
        known = [(p, v) for p, v in local.items() if v is not None and not math.isnan(v)]
        spread = None
        if known:
            worst = worse(known, key=lambda item: item[1])
            spread = {
                "min": min(v for _, v in known),
                "max": max(v for _, v in known),
                "worst": {"participant": worst[0], "value": worst[1]},
            }
        state = run.status or "RUNNING"
        wall = None
        if state != "SCHEDULED" and run.start_time is not None:
            end = run.end_time if run.end_time is not None else now
            wall = max(0.0, (end - run.start_time) / 1000)
        rows.append({
            "run": run.synergos_id,
            "number": trial.number,
            "mlflow_run_id": run.run_uuid,
            "state": state,
            "start_time": iso_time(run.start_time) if state != "SCHEDULED" else None,
            "end_time": iso_time(run.end_time),
            "wall_time_s": wall,
            "hyperparameters": json_safe(hyper),
            "hyperparameter_types": kinds,
            "tuner": trial.tuner,
            # A failed trial has no value (as a tuner says); what it last logged is apart.
            "value": None if state == "FAILED" else values.get(run.run_uuid),
            "last_value": values.get(run.run_uuid),
            "participants": local,
            "spread": spread,
            "hardware": _trial_cost(hardware_of.get(run.run_uuid, {})),
            "outside_space": outside,
        })  # fmt: skip
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    finished = [r for r in rows if r["state"] == "FINISHED" and r["value"] is not None
                and not math.isnan(r["value"])]  # fmt: skip
    better: Callable[[float, float], bool] = (
        (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    )
    history = []
    best: dict[str, Any] | None = None
    for row in sorted(finished, key=lambda r: r["number"]):
        if best is None or better(row["value"], best["value"]):
            best = row
        history.append({"number": row["number"], "run": row["run"], "value": row["value"],
                        "best": best["value"]})  # fmt: skip
    if definition is not None:
        names = list(definition.search_space)
    else:
        names = sorted({k for r in finished for k in r["hyperparameters"]})
    importance = param_importance(
        names, [decoded[r["mlflow_run_id"]] for r in finished], [r["value"] for r in finished],
        definition.search_space if definition else None,
    )  # fmt: skip
    return {
        "collaboration": ids.collaboration,
        "project": ids.project,
        "experiment": ids.experiment,
        "study": study,
        "defined": definition is not None,
        "default": definition is None and study == DEFAULT_STUDY,
        "search_space": json_safe(definition.search_space) if definition else None,
        "metric": key,
        "direction": direction,
        "created": iso_time(definition.created) if definition else None,
        "scoped": scoped,
        "counts": counts,
        "trials": rows,
        "best": best,
        "history": history,
        "importance": importance,
    }


# --- compare -----------------------------------------------------------------------------


def _align(runs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = sorted({k for r in runs for k in r})
    return {k: [r.get(k) for r in runs] for k in keys}


def compare_runs(
    backend: Backend, runs: Sequence[FederatedRun], keys: Sequence[str] | None
) -> dict[str, Any]:
    """Several federated runs side by side: hyperparameters (differing and common), final
    metrics (global and per participant) and the series of ``keys`` (default: the
    round-level keys every run has, at most 12)."""
    from synergos_mlops.studies import TAG_STUDY, TAG_TRIAL

    sm = backend.session_maker
    described = []
    hypers = []
    kinds = []
    finals = []
    for run in runs:
        tags = reads.run_tags(sm, run.parent.run_uuid)
        hyper, kind = decode_params(
            reads.params(sm, run.parent.run_uuid), read_types(tags.get(TAG_PARAM_TYPES))
        )
        hypers.append(hyper)
        kinds.append(kind)
        latest = reads.latest_metrics(sm, run.run_uuids)
        final: dict[str, Any] = {"global": {}, "participants": {}}
        for point in latest:
            owner = run.owner_of(point.run_uuid)
            if owner is None:
                final["global"][point.key] = point.value
            else:
                final["participants"].setdefault(owner, {})[point.key] = point.value
        finals.append(final)
        described.append({
            "ref": "/".join((run.ids.collaboration, run.ids.project, run.ids.experiment,
                             run.run_id)),
            "collaboration": run.ids.collaboration,
            "project": run.ids.project,
            "experiment": run.ids.experiment,
            "run": run.run_id,
            "status": run.parent.status,
            "mlflow_run_id": run.parent.run_uuid,
            "participants": [p.synergos_id for p in run.participants],
            "study": tags.get(TAG_STUDY),
            "trial": tags.get(TAG_TRIAL),
        })  # fmt: skip
    aligned = {k: [h.get(k, _ABSENT) for h in hypers] for k in sorted({k for h in hypers
                                                                         for k in h})}  # fmt: skip
    common = {k: json_safe(v[0]) for k, v in aligned.items()
              if all(x is not _ABSENT and same_value(x, v[0]) for x in v)}  # fmt: skip
    differing = {k: [None if x is _ABSENT else json_safe(x) for x in v]
                 for k, v in aligned.items() if k not in common}  # fmt: skip
    types = {k: [kind.get(k) for kind in kinds] for k in aligned}
    global_keys = sorted({k for f in finals for k in f["global"]})
    participants = sorted({p for f in finals for p in f["participants"]})
    if keys is None:
        shared = set.intersection(*(set(f["global"]) for f in finals)) if finals else set()
        keys = sorted(k for k in shared if "/class_" not in k and "/epoch/" not in k)[:12]
    series: dict[str, Any] = {}
    for key in keys:
        entry: dict[str, Any] = {"axis": "epoch" if "/epoch/" in f"/{key}" else "round",
                                 "runs": []}  # fmt: skip
        for run, final in zip(runs, finals, strict=True):
            has = key in final["global"] or any(key in m for m in final["participants"].values())
            if not has:
                entry["runs"].append({"global": None, "participants": {}})
                continue
            one = run_series(backend, run, [key])["series"][key]
            entry["runs"].append({"global": one["global"], "participants": one["participants"]})
        if not any(r["global"] or r["participants"] for r in entry["runs"]):
            raise NotFoundError(f"metric {key!r} not found in any of the runs")
        series[key] = entry
    return {
        "runs": described,
        "hyperparameters": {"differing": differing, "common": common},
        "hyperparameter_types": types,
        "metrics": {
            "keys": global_keys,
            "global": {k: [f["global"].get(k) for f in finals] for k in global_keys},
            "participants": {
                p: _align([f["participants"].get(p, {}) for f in finals]) for p in participants
            },
        },
        "series": series,
    }
