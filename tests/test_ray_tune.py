"""The Ray Tune callback: a real Ray session and real Tuners log their trials as trials of a
Synergos study on a real `synmlops serve`, read back through MLflow's client and the study API."""

from __future__ import annotations

import os
import pickle
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import ray
import requests
from conftest import Server
from mlflow import MlflowClient
from ray import tune
from tracking_support import fast_config

from synergos_mlops import InvalidValueError
from synergos_mlops.integrations.ray_tune import SynergosLoggerCallback, search_space_of

API = "/api/synergos/v1"
PARTICIPANTS = ["hospital-a", "klinik b"]
METRIC = "evaluate/accuracy"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def study(server: Server, c: str, name: str) -> dict:  # type: ignore[type-arg]
    url = f"{server.url}{API}/studies/" + "/".join(quote(x, safe="") for x in (c, "p", "e", name))
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def accuracy(lr: float, round_: int, participant: int | None = None) -> float:
    """A made-up response surface: better near lr = 0.01 and in later rounds."""
    import math

    local = 0.0 if participant is None else 0.03 * (participant + 1)
    return 0.9 - abs(math.log10(lr) + 2) * 0.1 - 0.05 * (2 - round_) - local


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray instance for the module (2 CPUs, no dashboard); its Tune results go to
    the answered folder."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's workers cannot import this test module: send its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield tmp_path_factory.mktemp("ray_results")
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def fit(
    trainable: object, space: dict[str, object], callback: SynergosLoggerCallback, storage: Path
) -> tune.ResultGrid:
    tuner = tune.Tuner(
        trainable,  # type: ignore[arg-type]
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=str(storage), callbacks=[callback], verbose=0,
                                  name=uuid.uuid4().hex),
    )  # fmt: skip
    return tuner.fit()


def test_a_ray_param_space_translates_to_nni_and_untranslatable_domains_are_refused() -> None:
    space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "mu": tune.choice([0.0, 0.1]),
        "optimizer": tune.grid_search(["sgd", "adam"]),
        "dropout": tune.quniform(0.0, 0.5, 0.1),
        "batch": tune.randint(8, 65),
        "noise": tune.randn(0.0, 1.0),
        "model": {"width": tune.uniform(0.5, 2.0), "depth": 3},
        "nni": {"_type": "qloguniform", "_value": [1, 100, 1]},
        "epochs": 2,
    }
    assert search_space_of(space) == {
        "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        "mu": {"_type": "choice", "_value": [0.0, 0.1]},
        "optimizer": {"_type": "choice", "_value": ["sgd", "adam"]},
        "dropout": {"_type": "quniform", "_value": [0.0, 0.5, 0.1]},
        "batch": {"_type": "randint", "_value": [8, 65]},
        "noise": {"_type": "normal", "_value": [0.0, 1.0]},
        "model/width": {"_type": "uniform", "_value": [0.5, 2.0]},
        "nni": {"_type": "qloguniform", "_value": [1, 100, 1]},
    }
    for domain in (tune.lograndint(1, 100), tune.qrandint(1, 10, 2),
                   tune.sample_from(lambda _: 1)):  # fmt: skip
        with pytest.raises(InvalidValueError, match="NNI"):
            search_space_of({"x": domain})
    with pytest.raises(InvalidValueError, match="direction"):
        SynergosLoggerCallback(None, "c", "p", "e", "s", METRIC, {}, direction="up")


def test_the_callback_pickles_without_its_tracker_as_tune_tuner_needs(
    shared_server: Server, tmp_path: Path
) -> None:
    callback = SynergosLoggerCallback(
        shared_server.url, "c", "p", "e", "s", METRIC, {"lr": tune.uniform(0.0, 1.0)},
        config=fast_config(tmp_path),
    )  # fmt: skip
    callback.setup()
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.search_space == {"lr": {"_type": "uniform", "_value": [0.0, 1.0]}}
    assert copy._tracker is None
    callback.on_experiment_end([])


def test_every_ray_trial_is_a_study_trial_with_its_hyperparameters_and_every_point(
    shared_server: Server, ray_session: Path, tmp_path: Path
) -> None:
    def trainable(config: dict) -> None:  # type: ignore[type-arg]
        for round_ in range(3):
            tune.report({
                "round": round_,
                METRIC: accuracy(config["lr"], round_),
                "train/loss": 1.0 - accuracy(config["lr"], round_),
                "participants": {
                    name: {METRIC: accuracy(config["lr"], round_, i)}
                    for i, name in enumerate(PARTICIPANTS)
                },
                "note": "text is not a metric",
            })  # fmt: skip

    c = unique("Ray")
    space = {"lr": tune.grid_search([0.001, 0.01, 0.03, 0.1]), "mu": tune.choice([0.0, 0.1]),
             "epochs": 2}  # fmt: skip
    callback = SynergosLoggerCallback(
        shared_server.url, c, "p", "e", "grid", METRIC, space, direction="max",
        participants=PARTICIPANTS[:1], config=fast_config(tmp_path),
    )  # fmt: skip
    results = fit(trainable, space, callback, ray_session)
    assert not results.errors

    answer = study(shared_server, c, "grid")
    assert answer["search_space"] == {
        "lr": {"_type": "choice", "_value": [0.001, 0.01, 0.03, 0.1]},
        "mu": {"_type": "choice", "_value": [0.0, 0.1]},
    }
    assert (answer["metric"], answer["direction"]) == (METRIC, "maximize")
    assert answer["counts"] == {"SCHEDULED": 0, "RUNNING": 0, "FINISHED": 4, "FAILED": 0,
                                "KILLED": 0}  # fmt: skip
    assert sorted(t["run"] for t in answer["trials"]) == sorted(callback.runs.values())
    assert len(callback.runs) == 4
    configs = {r.config["lr"]: r.config for r in results}
    client = MlflowClient(shared_server.url)
    assert callback.failures == 0
    for trial in answer["trials"]:
        lr = trial["hyperparameters"]["lr"]
        assert trial["hyperparameters"] == configs[lr]
        assert trial["hyperparameter_types"] == {"lr": "float", "mu": "float", "epochs": "int"}
        # Ray's own trial id, beside the study's number.
        assert trial["tuner"]["tuner"] == "ray"
        assert callback.runs[trial["tuner"]["trial"]] == trial["run"]
        assert trial["outside_space"] == []
        assert trial["value"] == pytest.approx(accuracy(lr, 2))
        assert trial["participants"] == {
            name: pytest.approx(accuracy(lr, 2, i)) for i, name in enumerate(PARTICIPANTS)
        }
        parent = client.get_run(trial["mlflow_run_id"])
        assert parent.info.status == "FINISHED"
        # Only what the trainable reported, numbers only: none of Ray's own keys or 'round'.
        assert set(parent.data.metrics) == {METRIC, "train/loss"}
        for key, expected in ((METRIC, accuracy), ("train/loss", None)):
            history = client.get_metric_history(parent.info.run_id, key)
            assert sorted(m.step for m in history) == [0, 1, 2]
            if expected is not None:
                assert {m.step: m.value for m in history} == {
                    r: pytest.approx(accuracy(lr, r)) for r in range(3)
                }
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        )
        assert {r.data.tags["synergos.participant"] for r in children} == set(PARTICIPANTS)
        for child in children:
            assert child.info.status == "FINISHED"
            i = PARTICIPANTS.index(child.data.tags["synergos.participant"])
            history = client.get_metric_history(child.info.run_id, METRIC)
            assert {m.step: m.value for m in history} == {
                r: pytest.approx(accuracy(lr, r, i)) for r in range(3)
            }
    assert answer["best"]["hyperparameters"]["lr"] == 0.01


def test_a_trainable_that_raises_ends_its_trial_failed_and_steps_follow_training_iteration(
    shared_server: Server, ray_session: Path, tmp_path: Path
) -> None:
    def trainable(config: dict) -> None:  # type: ignore[type-arg]
        for iteration in range(2):
            tune.report({METRIC: 0.5 + 0.1 * iteration,
                         f"participants/{PARTICIPANTS[1]}/{METRIC}": 0.4})  # fmt: skip
        if config["lr"] > 0.05:
            raise RuntimeError("the federated cycle broke")

    c = unique("RayFail")
    space = {"lr": {"_type": "loguniform", "_value": [1e-4, 1.0]}}
    callback = SynergosLoggerCallback(
        shared_server.url, c, "p", "e", "fails", METRIC, space, config=fast_config(tmp_path),
    )  # fmt: skip
    results = fit(trainable, {"lr": tune.grid_search([0.01, 0.5])}, callback, ray_session)
    assert len(results.errors) == 1

    answer = study(shared_server, c, "fails")
    assert answer["search_space"] == space
    states = {t["hyperparameters"]["lr"]: t["state"] for t in answer["trials"]}
    assert states == {0.01: "FINISHED", 0.5: "FAILED"}
    client = MlflowClient(shared_server.url)
    for trial in answer["trials"]:
        history = client.get_metric_history(trial["mlflow_run_id"], METRIC)
        assert {m.step: m.value for m in history} == {1: 0.5, 2: pytest.approx(0.6)}
        # A failed trial has no value; what it last logged is shown apart.
        assert trial["last_value"] == pytest.approx(0.6)
        assert trial["value"] == (None if trial["state"] == "FAILED" else pytest.approx(0.6))
        assert trial["participants"] == {PARTICIPANTS[1]: 0.4}
        children = client.search_runs(
            [client.get_run(trial["mlflow_run_id"]).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{trial['mlflow_run_id']}'",
        )
        assert [r.info.status for r in children] == [trial["state"]]


def test_trials_still_running_when_the_experiment_stops_end_killed(
    shared_server: Server, ray_session: Path, tmp_path: Path
) -> None:
    class StopEverything(tune.Stopper):  # the experiment ends with its trial mid-way
        seen = 0

        def __call__(self, trial_id: str, result: dict) -> bool:  # type: ignore[type-arg]
            self.seen += 1
            return False

        def stop_all(self) -> bool:
            return self.seen >= 2

    def trainable(config: dict) -> None:  # type: ignore[type-arg]
        import time

        for round_ in range(100):
            tune.report({"round": round_, METRIC: 0.5})
            time.sleep(0.05)

    c = unique("RayStop")
    space = {"lr": tune.grid_search([0.01])}
    callback = SynergosLoggerCallback(
        shared_server.url, c, "p", "e", "stopped", METRIC, space, config=fast_config(tmp_path),
    )  # fmt: skip
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(ray_session), callbacks=[callback], verbose=0,
                                  stop=StopEverything(), name=uuid.uuid4().hex),
    )  # fmt: skip
    tuner.fit()
    answer = study(shared_server, c, "stopped")
    assert [t["state"] for t in answer["trials"]] == ["KILLED"]
    assert answer["trials"][0]["value"] == 0.5


def test_a_restored_tuner_goes_on_in_the_runs_its_trials_had(
    shared_server: Server, ray_session: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "broken"
    marker.touch()

    def trainable(config: dict) -> None:  # type: ignore[type-arg]
        for round_ in range(2):  # no checkpoints: a resumed trial starts again at round 0
            tune.report({"round": round_, METRIC: config["lr"] + round_})
        if config["lr"] > 0.05 and os.path.exists(str(marker)):
            raise RuntimeError("the aggregator went away")

    c = unique("RayRestore")
    space = {"lr": tune.grid_search([0.01, 0.5])}
    callback = SynergosLoggerCallback(
        shared_server.url, c, "p", "e", "restored", METRIC, space, config=fast_config(tmp_path),
    )  # fmt: skip
    name = uuid.uuid4().hex
    tune.Tuner(
        trainable, param_space=space,
        run_config=tune.RunConfig(storage_path=str(ray_session), callbacks=[callback], verbose=0,
                                  name=name),
    ).fit()  # fmt: skip
    before = study(shared_server, c, "restored")
    assert sorted(t["state"] for t in before["trials"]) == ["FAILED", "FINISHED"]

    marker.unlink()  # the federation is back: the errored trial is resumed (same Ray trial)
    restored = tune.Tuner.restore(str(ray_session / name), trainable, resume_errored=True)
    assert not restored.fit().errors
    after = study(shared_server, c, "restored")
    assert after["counts"]["FINISHED"] == 2
    assert {t["run"]: t["number"] for t in after["trials"]} == {
        t["run"]: t["number"] for t in before["trials"]
    }
    assert {t["hyperparameters"]["lr"]: t["value"] for t in after["trials"]} == {
        0.01: pytest.approx(1.01),
        0.5: pytest.approx(1.5),
    }
