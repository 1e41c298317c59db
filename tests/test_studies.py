"""Studies: trials queued and run through the tracker, flagged when outside their search
space, fed by a real Optuna study, grouped from optim_run_* runs, and the study API's answer,
on a real `synmlops serve`."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from conftest import Server
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker, InvalidIdError, InvalidValueError
from synergos_mlops.errors import StoreError

API = "/api/synergos/v1"
SPACE = {
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "mu": {"_type": "choice", "_value": [0.0, 0.1, 1.0]},
    "rounds": {"_type": "randint", "_value": [2, 6]},
}
PARTICIPANTS = ["hospital-a", "hospital b", "klinik-ü"]


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def study_url(server: Server, c: str, p: str, e: str, s: str) -> str:
    return f"{server.url}{API}/studies/" + "/".join(quote(x, safe="") for x in (c, p, e, s))


def accuracy(hp: dict[str, float], participant: int) -> float:
    """A made-up response surface: best near lr = 0.01, worse for each later participant."""
    import math

    return 0.9 - abs(math.log10(hp["lr"]) + 2) * 0.1 - 0.02 * participant + 0.01 * hp["mu"]


def log_trial(run, hp: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    for round_ in range(3):
        values = [accuracy(hp, i) - 0.05 * (2 - round_) for i in range(len(PARTICIPANTS))]
        for participant, value in zip(PARTICIPANTS, values, strict=True):
            run.log_metrics({"evaluate/accuracy": value}, step=round_, participant=participant)
        run.log_metrics({"evaluate/accuracy": sum(values) / len(values)}, step=round_)


def test_a_study_queues_trials_then_runs_them_and_the_api_ranks_them(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Cardiac")
    client = MlflowClient(shared_server.url)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        study = tracker.study(c, "heart", "fedprox", "lr search", SPACE, "evaluate/accuracy",
                              "maximize")  # fmt: skip
        queue = [
            study.trial({"lr": lr, "mu": 0.1, "rounds": 3}, queued=True)
            for lr in (0.01, 0.001, 0.05)
        ]
        assert [q.number for q in queue] == [1, 2, 3]
        assert [q.run for q in queue] == ["lr search_run_1", "lr search_run_2", "lr search_run_3"]
        assert {client.get_run(q.run_id).info.status for q in queue} == {"SCHEDULED"}
        queued = requests.get(study_url(shared_server, c, "heart", "fedprox", "lr search"),
                              timeout=60).json()  # fmt: skip
        assert queued["counts"]["SCHEDULED"] == 3 and queued["best"] is None
        for waiting in queue[:2]:
            with study.trial(waiting.hyperparameters, run=waiting.run,
                             participants=PARTICIPANTS) as run:  # fmt: skip
                assert run.number == waiting.number and run.run_id == waiting.run_id
                log_trial(run, waiting.hyperparameters)
        with study.trial({"lr": 0.02, "mu": 1.0, "rounds": 4}, participants=PARTICIPANTS) as run:
            assert run.number == 4 and run.run == "lr search_run_4"
            log_trial(run, {"lr": 0.02, "mu": 1.0})
        # The same study again (another tracker, a replica): found, not redefined.
        again = tracker.study(c, "heart", "fedprox", "lr search", SPACE, "evaluate/accuracy",
                              "maximize")  # fmt: skip
        assert again.definition.created == study.definition.created

    answer = requests.get(study_url(shared_server, c, "heart", "fedprox", "lr search"),
                          timeout=60).json()  # fmt: skip
    assert answer["search_space"] == SPACE
    assert (answer["metric"], answer["direction"]) == ("evaluate/accuracy", "maximize")
    assert answer["counts"] == {"SCHEDULED": 1, "RUNNING": 0, "FINISHED": 3, "FAILED": 0,
                                "KILLED": 0}  # fmt: skip
    trials = {t["number"]: t for t in answer["trials"]}
    assert trials[3]["state"] == "SCHEDULED" and trials[3]["wall_time_s"] is None
    assert trials[1]["hyperparameters"] == {"lr": 0.01, "mu": 0.1, "rounds": 3}
    assert trials[1]["wall_time_s"] is not None and trials[1]["outside_space"] == []
    expected = sum(accuracy({"lr": 0.01, "mu": 0.1}, i) for i in range(3)) / 3
    assert trials[1]["value"] == pytest.approx(expected)
    spread = trials[1]["spread"]
    assert spread["worst"]["participant"] == "klinik-ü"
    assert spread["min"] == pytest.approx(accuracy({"lr": 0.01, "mu": 0.1}, 2))
    assert spread["max"] == pytest.approx(accuracy({"lr": 0.01, "mu": 0.1}, 0))
    assert set(trials[1]["participants"]) == set(PARTICIPANTS)
    assert answer["best"]["number"] == 1
    assert [h["number"] for h in answer["history"]] == [1, 2, 4]
    bests = [h["best"] for h in answer["history"]]
    assert bests == sorted(bests) and bests[-1] == pytest.approx(trials[1]["value"])
    importance = answer["importance"]
    assert "scikit-learn" in importance["method"]
    assert set(importance["params"]) == {"lr", "mu", "rounds"}
    assert sum(importance["params"].values()) == pytest.approx(1.0)

    listing = requests.get(f"{shared_server.url}{API}/studies", params={"collaboration": c},
                           timeout=60).json()["studies"]  # fmt: skip
    assert [(s["study"], s["trial_count"], s["counts"]["FINISHED"]) for s in listing] == [
        ("lr search", 4, 3)
    ]


def test_a_trial_outside_its_search_space_is_logged_and_flagged(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Outside")
    client = MlflowClient(shared_server.url)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        study = tracker.study(c, "p", "e", "s", SPACE, "evaluate/loss", "minimize")
        with study.trial({"lr": 0.5, "mu": 0.3, "rounds": 3}, participants=["w"]) as run:
            assert run.outside_space == ("lr", "mu")
            run.log_metrics({"evaluate/loss": 0.4}, step=0)
        tags = client.get_run(run.run_id).data.tags
        assert tags["synergos.trial.outside_space"] == '["lr", "mu"]'
        assert tags["synergos.study"] == "s" and tags["synergos.trial"] == "1"
    trial = requests.get(study_url(shared_server, c, "p", "e", "s"), timeout=60).json()["trials"]
    assert trial[0]["outside_space"] == ["lr", "mu"] and trial[0]["value"] == 0.4


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("{not json", "not JSON"),
        ([1, 2], "must map a hyperparameter"),
        ({"lr": [0.1, 0.2]}, '"_type"'),
        ({"lr": {"_type": "gaussian", "_value": [0, 1]}}, "is not one of"),
        ({"lr": {"_type": "uniform", "_value": [1, 0]}}, "lower bound above upper"),
        ({"lr": {"_type": "loguniform", "_value": [0, 1]}}, "must be positive"),
        ({"lr": {"_type": "choice", "_value": []}}, "at least one option"),
    ],
)
def test_a_bad_search_space_is_refused_with_a_clear_error(
    shared_server: Server, tmp_path: Path, space: object, message: str
) -> None:
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))
    with tracker, pytest.raises(InvalidValueError, match=message):
        tracker.study("c", "p", "e", "s", space, "evaluate/loss", "minimize")  # type: ignore[arg-type]


def test_bad_study_names_directions_and_redefinitions_are_refused(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Refused")
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        with pytest.raises(InvalidIdError, match="must not contain '/'"):
            tracker.study(c, "p", "e", "a/b", SPACE, "evaluate/loss", "minimize")
        with pytest.raises(InvalidValueError, match="maximize or minimize"):
            tracker.study(c, "p", "e", "s", SPACE, "evaluate/loss", "lowest")
        tracker.study(c, "p", "e", "s", SPACE, "evaluate/loss", "minimize")
        with pytest.raises(StoreError, match="already defined with another"):
            tracker.study(c, "p", "e", "s", SPACE, "evaluate/loss", "maximize")
    for body, status in (
        ({"collaboration": c, "project": "p", "experiment": "e", "study": "nope"}, 404),
        ({"collaboration": c, "project": "p", "experiment": "e", "study": "a/b"}, 400),
    ):
        response = requests.post(f"{shared_server.url}{API}/studies/trials/resolve", json=body,
                                 timeout=60)  # fmt: skip
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]


def test_study_routes_answer_404_json_naming_what_is_missing(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Missing")
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        tracker.study(c, "p", "e", "s", SPACE, "evaluate/loss", "minimize")
    for ids, missing in (
        ((c, "p", "e", "other"), "study 'other' not found"),
        ((c, "p", "nope", "s"), "experiment 'nope' not found"),
        (("no such collaboration", "p", "e", "s"), "collaboration 'no such collaboration'"),
    ):
        response = requests.get(study_url(shared_server, *ids), timeout=60)
        assert response.status_code == 404
        assert missing in response.json()["error"]["message"]
    bad = requests.get(study_url(shared_server, c, "p", "e", "s(1)"), timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_REQUEST"


def test_optim_runs_from_ingest_or_an_original_ttp_form_the_default_study(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Legacy")
    client = MlflowClient(shared_server.url)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        for number, lr in ((1, 0.1), (2, 0.01), (10, 0.001)):
            with tracker.run(c, "p", "e", f"optim_run_{number}", hyperparameters={"lr": lr},
                             participants=["w1", "w2"]) as run:  # fmt: skip
                run.log_metrics({"evaluate/loss": lr * 3}, step=0)
                run.log_metrics({"evaluate/loss": lr * 2}, step=0, participant="w1")
                run.log_metrics({"evaluate/loss": lr * 4}, step=0, participant="w2")
            if number == 10:  # as the legacy mirror marks a run an original TTP wrote
                client.set_tag(run.run_id, "synergos.source", "file-store")
        with tracker.run(c, "p", "e", "baseline") as run:
            run.log_metrics({"evaluate/loss": 1.0}, step=0)
    listing = requests.get(f"{shared_server.url}{API}/studies", params={"collaboration": c},
                           timeout=60).json()["studies"]  # fmt: skip
    assert [(s["study"], s["defined"], s["trial_count"]) for s in listing] == [("optim", False, 3)]
    answer = requests.get(study_url(shared_server, c, "p", "e", "optim"), timeout=60).json()
    assert answer["default"] is True and answer["search_space"] is None
    assert (answer["metric"], answer["direction"]) == ("evaluate/loss", "minimize")
    assert [t["number"] for t in answer["trials"]] == [1, 2, 10]
    assert answer["best"]["run"] == "optim_run_10"
    assert answer["trials"][0]["spread"]["worst"] == {"participant": "w2", "value": 0.4}
    assert list(answer["importance"]["params"]) == ["lr"]


def test_the_optuna_callback_logs_each_finished_optuna_trial_as_a_study_trial(
    shared_server: Server, tmp_path: Path
) -> None:
    import optuna

    from synergos_mlops.integrations.optuna import SynergosCallback

    c = unique("Optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        for step in range(2):
            trial.report(0.5 + step * 0.1, step)
        if trial.number == 3:
            raise optuna.TrialPruned()
        return 1.0 - abs(lr - 0.01) - (0.1 if optimizer == "sgd" else 0.0)

    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        callback = SynergosCallback(tracker, c, "p", "e", "tpe", "evaluate/accuracy")
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=1))  # fmt: skip
        study.optimize(objective, n_trials=6, callbacks=[callback])

    answer = requests.get(study_url(shared_server, c, "p", "e", "tpe"), timeout=60).json()
    assert answer["search_space"]["lr"] == {"_type": "loguniform", "_value": [1e-4, 1e-1]}
    assert answer["search_space"]["optimizer"] == {"_type": "choice", "_value": ["sgd", "adam"]}
    assert answer["counts"]["FINISHED"] == 5 and answer["counts"]["KILLED"] == 1
    trials = {t["number"]: t for t in answer["trials"]}
    for frozen in study.trials:
        logged = trials[frozen.number + 1]
        assert logged["hyperparameters"] == frozen.params
        if frozen.value is not None:
            assert logged["value"] == pytest.approx(frozen.value)
    assert answer["best"]["value"] == pytest.approx(study.best_value)
    assert answer["best"]["hyperparameters"] == study.best_params
    assert set(answer["importance"]["params"]) == {"lr", "optimizer"}


def post_hardware(url: str, collaboration: str, samples: dict[str, dict[str, list[float]]],
                  stamps: dict[str, list[int]], facts: dict[str, dict[str, str]],
                  auth: tuple[str, str] | None = None) -> None:  # fmt: skip
    """One sample batch: for each participant, each key's values at its stamps."""
    from synergos_mlops.storage.batch import MetricBatch
    from synergos_mlops.storage.samples import encode_samples, target

    batch = MetricBatch()
    named_facts = {}
    for participant, keys in samples.items():
        name = target(collaboration, participant)
        named_facts[name] = facts.get(participant, {})
        for key, values in keys.items():
            for stamp, value in zip(stamps[participant], values, strict=True):
                batch.append(name, key, 0, value, stamp)
    answer = requests.post(
        f"{url}{API}/system/samples", data=encode_samples(batch, named_facts), timeout=60,
        auth=auth, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert answer.status_code == 200 and answer.json()["unmatched"] == 0, answer.text


def test_a_trials_hardware_cost_sums_its_participants_samples_and_names_the_costliest(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("Hardware")
    client = MlflowClient(shared_server.url)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        study = tracker.study(c, "p", "e", "cost", SPACE, "evaluate/accuracy", "maximize")
        with study.trial({"lr": 0.01, "mu": 0.1, "rounds": 3}, participants=PARTICIPANTS) as run:
            log_trial(run, {"lr": 0.01, "mu": 0.1})
            run.flush()
            children = {p: run.participant_run_id(p) for p in PARTICIPANTS}
            starts = {p: client.get_run(children[p]).info.start_time for p in PARTICIPANTS}
            # A second apart (a run keeps one sample per second), within the participant runs.
            stamps = {p: [starts[p] + 100, starts[p] + 1100, starts[p] + 2100] for p in starts}
            time.sleep(2.5)
            post_hardware(shared_server.url, c, {
                "hospital-a": {  # the training process, a GPU and network counters
                    "system/process_cpu_utilization_percentage": [50, 150, 100],
                    "system/process_memory_rss_megabytes": [100, 300, 200],
                    "system/cpu_utilization_percentage": [10, 10, 10],
                    "system/gpu_0_utilization_percentage": [40, 50, 60],
                    "system/network_receive_megabytes": [10, 12, 15],
                    "system/network_transmit_megabytes": [1, 2, 3],
                },
                "hospital b": {  # the machine only (as the original SysmetricLogger sends)
                    "system/cpu_utilization_percentage": [25, 25, 25],
                    "system/system_memory_usage_megabytes": [1000, 2000, 1500],
                },
            }, stamps, {"hospital b": {"cpu_count": "8"}})  # fmt: skip
        with study.trial({"lr": 0.001, "mu": 0.1, "rounds": 3}, participants=PARTICIPANTS) as run:
            log_trial(run, {"lr": 0.001, "mu": 0.1})
    walls = {}
    for p, child in children.items():
        info = client.get_run(child).info
        walls[p] = (info.end_time - info.start_time) / 1000

    answer = requests.get(study_url(shared_server, c, "p", "e", "cost"), timeout=60).json()
    assert answer["scoped"] is False
    first, second = answer["trials"]
    assert second["hardware"] is None  # no participant of it was sampled
    cost = first["hardware"]
    a, b = walls["hospital-a"], walls["hospital b"]
    assert cost["cpu_seconds"] == pytest.approx(1.0 * a + 0.25 * 8 * b)
    assert cost["gpu_seconds"] == pytest.approx(0.5 * a)
    assert cost["memory_peak_megabytes"] == pytest.approx(300 + 2000)
    assert cost["network_megabytes"] == pytest.approx(5 + 2)
    assert cost["samples"] == 6
    assert set(cost["participants"]) == {"hospital-a", "hospital b"}  # klinik-ü: no samples
    assert cost["participants"]["hospital b"]["gpu_seconds"] is None
    assert cost["participants"]["hospital-a"]["wall_time_s"] == pytest.approx(a)
    assert cost["costliest"] == {"participant": "hospital-a", "by": "gpu_seconds",
                                 "value": pytest.approx(0.5 * a)}  # fmt: skip
    assert answer["best"]["number"] == 1 and answer["best"]["hardware"] == cost


def test_a_study_in_a_store_folder_is_answered_by_a_server_started_on_it_later(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with FederatedTracker(store, fast_config(tmp_path)) as tracker:
        study = tracker.study("c", "p", "e", "folder search", SPACE, "evaluate/accuracy",
                              "maximize")  # fmt: skip
        waiting = study.trial({"lr": 0.01, "mu": 0.1, "rounds": 3}, queued=True)
        assert (waiting.number, waiting.run) == (1, "folder search_run_1")
        with study.trial(waiting.hyperparameters, run=waiting.run,
                         participants=PARTICIPANTS) as run:  # fmt: skip
            assert run.number == 1
            log_trial(run, waiting.hyperparameters)
        with study.trial({"lr": 0.5, "mu": 0.1, "rounds": 3}, participants=PARTICIPANTS) as run:
            assert (run.number, run.outside_space) == (2, ("lr",))
            log_trial(run, {"lr": 0.5, "mu": 0.1})
        queued = study.trial({"lr": 0.001, "mu": 0.0, "rounds": 2}, queued=True)
        again = tracker.study("c", "p", "e", "folder search", SPACE, "evaluate/accuracy",
                              "maximize")  # fmt: skip
        assert again.definition.created == study.definition.created
    server = server_factory(store)
    answer = requests.get(study_url(server, "c", "p", "e", "folder search"), timeout=60).json()
    assert answer["defined"] is True and answer["search_space"] == SPACE
    assert [(t["number"], t["state"]) for t in answer["trials"]] == [
        (1, "FINISHED"), (2, "FINISHED"), (3, "SCHEDULED"),
    ]  # fmt: skip
    assert answer["trials"][2]["run"] == queued.run
    assert answer["trials"][1]["outside_space"] == ["lr"]
    assert set(answer["trials"][0]["participants"]) == set(PARTICIPANTS)
    assert answer["best"]["number"] == 1
    listing = requests.get(f"{server.url}{API}/studies", timeout=60).json()["studies"]
    assert [(s["study"], s["trial_count"]) for s in listing] == [("folder search", 3)]
    # The folder is still the tracker's: a later tracker numbers on from the served trials.
    with FederatedTracker(server.url, fast_config(tmp_path / "later")) as tracker:
        later = tracker.study("c", "p", "e", "folder search", SPACE, "evaluate/accuracy",
                              "maximize").trial({"lr": 0.02, "mu": 0.0, "rounds": 2},
                                                queued=True)  # fmt: skip
    assert later.number == 4


def test_trial_hardware_is_aggregated_by_the_database_the_same_on_sqlite_and_postgresql(
    sql_store,
) -> None:
    from mlflow.entities import RunStatus

    from synergos_mlops.federation import ExperimentIds
    from synergos_mlops.storage.batch import MetricBatch
    from synergos_mlops.storage.runs import resolve_run
    from synergos_mlops.storage.samples import decode_samples, encode_samples, target
    from synergos_mlops.storage.studies import trial_hardware
    from synergos_mlops.storage.system import attach_samples

    store = sql_store
    resolved = resolve_run(store, ExperimentIds("hospitals", "p", "e"), "r", ["w1", "w2", "w3"])
    runs = resolved.participants
    batch = MetricBatch()
    for participant, keys in {
        "w1": {"system/process_cpu_utilization_percentage": [100.0, 300.0, math.nan],
               "system/process_memory_rss_megabytes": [10.0, 30.0, 20.0],
               "system/gpu_0_utilization_percentage": [100.0, 100.0, 100.0],
               "system/gpu_1_utilization_percentage": [50.0, 50.0, 50.0]},
        "w2": {"system/cpu_utilization_percentage": [50.0, 50.0, 50.0],
               "system/network_transmit_megabytes": [3.0, 4.0, 9.0],
               "system/disk_usage_percentage": [1.0, 1.0, 1.0]},
    }.items():  # fmt: skip
        start = store.get_run(runs[participant]).info.start_time
        for key, values in keys.items():
            for second, value in enumerate(values):
                batch.append(target("hospitals", participant), key, 0, value,
                             start + 1000 * second)  # fmt: skip
    facts = {target("hospitals", "w2"): {"cpu_count": "4"}}
    attach_samples(store.engine, decode_samples(encode_samples(batch, facts)))
    for run_uuid in runs.values():
        start = store.get_run(run_uuid).info.start_time
        store.update_run_info(run_uuid, RunStatus.FINISHED, start + 10_000, None)

    found = trial_hardware(store.ManagedSessionMaker, list(runs.values()))
    assert set(found) == {runs["w1"], runs["w2"]}  # w3 was not sampled
    w1, w2 = found[runs["w1"]], found[runs["w2"]]
    assert w1.wall_time_s == 10 and w1.samples == 3
    assert w1.cpu_seconds == pytest.approx(2.0 * 10)  # NaN left out: mean of 100 and 300
    assert w1.memory_peak_megabytes == 30 and w1.gpu_seconds == pytest.approx(1.5 * 10)
    assert w1.network_megabytes is None
    assert w2.cpu_seconds == pytest.approx(0.5 * 4 * 10)  # the machine's, times its cores
    assert (w2.memory_peak_megabytes, w2.gpu_seconds, w2.network_megabytes) == (None, None, 6)
    assert trial_hardware(store.ManagedSessionMaker, [runs["w3"]]) == {}
