"""A study's hyperparameters come back with the value and the type the tuner chose (MLflow
keeps params as text; the trial keeps their types beside them), through real Optuna, the
study API and compare, on a real `synmlops serve`; a tuner callback never raises into the
user's study."""

from __future__ import annotations

import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import pytest
import requests
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.integrations.optuna import SynergosCallback

API = "/api/synergos/v1"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_url(server: Server, c: str, p: str, e: str, s: str) -> str:
    return f"{server.url}{API}/studies/" + "/".join(quote(x, safe="") for x in (c, p, e, s))


def typed(value: Any) -> tuple[str, Any]:
    """A value with its type, NaN comparable and -0.0 apart from 0.0."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else (value, math.copysign(1.0, value)))
    return (type(value).__name__, value)


def from_api(value: Any, kind: str) -> Any:
    """A hyperparameter as the study API answers it, decoded through its type: a float that
    strict JSON cannot hold comes as "NaN", "Infinity" or "-Infinity"."""
    if kind == "float" and isinstance(value, str):
        return float(value)
    if kind == "float" and isinstance(value, int):
        return float(value)
    return value


TYPE_NAMES = {bool: "bool", type(None): "null", str: "str", int: "int", float: "float"}
CHOICES: list[Any] = [True, False, None, "null", "0.5", "True", "None", 2, 0.5]


def test_optuna_categorical_choices_come_back_with_the_value_and_type_optuna_chose(
    shared_server: Server, tmp_path: Path
) -> None:
    c = f"Typed {uuid.uuid4().hex[:6]}"

    def objective(trial: optuna.Trial) -> float:
        choice = trial.suggest_categorical("choice", CHOICES)
        return float(next(i for i, x in enumerate(CHOICES) if typed(x) == typed(choice)))

    study = optuna.create_study(direction="maximize")
    for choice in CHOICES:
        study.enqueue_trial({"choice": choice})
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        callback = SynergosCallback(tracker, c, "p", "e", "choices", "evaluate/accuracy")
        study.optimize(objective, n_trials=len(CHOICES), callbacks=[callback])
    assert callback.failures == 0
    assert [typed(t.params["choice"]) for t in study.trials] == [typed(x) for x in CHOICES]

    answer = requests.get(study_url(shared_server, c, "p", "e", "choices"), timeout=60).json()
    assert [typed(x) for x in answer["search_space"]["choice"]["_value"]] == [
        typed(x) for x in CHOICES
    ]
    trials = {t["number"]: t for t in answer["trials"]}
    for frozen in study.trials:  # one worker: the study's numbers follow Optuna's
        logged = trials[frozen.number + 1]
        assert typed(logged["hyperparameters"]["choice"]) == typed(frozen.params["choice"])
        assert logged["hyperparameter_types"]["choice"] == TYPE_NAMES[type(frozen.params["choice"])]
        assert logged["outside_space"] == []
        assert logged["value"] == frozen.value
    assert answer["best"]["hyperparameters"] == {"choice": 0.5}
    assert answer["best"]["value"] == study.best_value

    # Compare reads them the same way: True and "True" differ, and each keeps its type.
    runs = [trials[CHOICES.index(x) + 1]["run"] for x in (True, "True")]
    compared = requests.get(
        f"{shared_server.url}{API}/compare",
        params={"run": [f"{c}/p/e/{r}" for r in runs]},
        timeout=60,
    ).json()
    assert [typed(x) for x in compared["hyperparameters"]["differing"]["choice"]] == [
        typed(True),
        typed("True"),
    ]
    assert compared["hyperparameter_types"]["choice"] == ["bool", "str"]


def test_a_tuner_callback_counts_what_it_cannot_log_and_the_study_goes_on(
    shared_server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = f"Refused {uuid.uuid4().hex[:6]}"
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        # The Synergos study exists with the other direction: every trial is refused (409).
        tracker.study(c, "p", "e", "s", {}, "evaluate/loss", "maximize")
        callback = SynergosCallback(tracker, c, "p", "e", "s", "evaluate/loss")
        study = optuna.create_study(direction="minimize")
        with caplog.at_level(logging.WARNING, "synergos_mlops.integrations.optuna"):
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3,
                           callbacks=[callback])  # fmt: skip
    assert len(study.trials) == 3 and callback.failures == 3
    assert "another metric or direction" in (callback.last_failure or "")
    warned = [r for r in caplog.records if "was not logged" in r.getMessage()]
    assert len(warned) == 1  # named once, counted always

    # A server that is away: the study goes on too.
    away = FederatedTracker("http://127.0.0.1:9", fast_config(tmp_path / "away",
                                                               connect_timeout=0.5))  # fmt: skip
    callback = SynergosCallback(away, c, "p", "e", "other", "evaluate/loss")
    study = optuna.create_study(direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2, callbacks=[callback])
    away.close(timeout=0.5)
    assert len(study.trials) == 2 and callback.failures == 2


# Every scalar a tuner may choose: the strings look like numbers, bools and null on purpose.
SCALARS = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.0, math.inf, -math.inf, math.nan]),
    st.sampled_from(
        [
            "True",
            "False",
            "true",
            "None",
            "null",
            "0.5",
            "1",
            "-0.0",
            "nan",
            "Infinity",
            "1e3",
            "[1]",
            "{}",
            '"x"',
            "",
            " 1 ",
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
)


# The long profile (HYPOTHESIS_PROFILE=fuzz) runs past the suite's per-test timeout.
@pytest.mark.timeout(0 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 300)
def test_every_scalar_a_tuner_chooses_round_trips_through_the_callback_and_the_study_api(
    shared_server: Server, tmp_path: Path
) -> None:
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))

    @settings(deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(st.lists(SCALARS, min_size=1, max_size=4))
    def round_trip(values: list[Any]) -> None:
        name = f"types {uuid.uuid4().hex[:8]}"
        params = {f"p{i}": v for i, v in enumerate(values)}
        distributions = {
            k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()
        }
        study = optuna.create_study(direction="maximize")
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=1.0))  # fmt: skip
        callback = SynergosCallback(tracker, "Hypothesis", "p", "e", name, "evaluate/accuracy")
        callback(study, study.trials[-1])
        assert callback.failures == 0, callback.last_failure
        answer = requests.get(study_url(shared_server, "Hypothesis", "p", "e", name),
                              timeout=60).json()  # fmt: skip
        (trial,) = answer["trials"]
        back = {k: from_api(v, trial["hyperparameter_types"][k])
                for k, v in trial["hyperparameters"].items()}  # fmt: skip
        assert {k: typed(v) for k, v in back.items()} == {k: typed(v) for k, v in params.items()}
        assert trial["outside_space"] == [] and trial["tuner"] == {"tuner": "optuna", "trial": 0}
        space = answer["search_space"]
        assert {k: typed(from_api(space[k]["_value"][0], type_name(v)))
                for k, v in params.items()} == {k: typed(v) for k, v in params.items()}  # fmt: skip

    try:
        round_trip()
    finally:
        tracker.close()


def type_name(value: Any) -> str:
    return "float" if isinstance(value, float) else type(value).__name__


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"types": {"lr": "complex"}}, "types must map a hyperparameter"),
        ({"types": ["float"]}, "body.types"),
        ({"tuner": {"tuner": "optuna"}}, "tuner must be"),
        ({"tuner": {"tuner": "", "trial": 1}}, "tuner must be"),
        ({"tuner": {"tuner": "optuna", "trial": True}}, "tuner must be"),
    ],
)
def test_a_trial_request_with_bad_types_or_tuner_is_refused_and_creates_nothing(
    shared_server: Server, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    c = f"Bad {uuid.uuid4().hex[:6]}"
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        tracker.study(c, "p", "e", "s", {}, "evaluate/loss", "minimize")
    body = {"collaboration": c, "project": "p", "experiment": "e", "study": "s", **extra}
    response = requests.post(f"{shared_server.url}{API}/studies/trials/resolve", json=body,
                             timeout=60)  # fmt: skip
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    answer = requests.get(study_url(shared_server, c, "p", "e", "s"), timeout=60).json()
    assert answer["trials"] == []
