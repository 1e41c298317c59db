"""Two Optuna workers (two processes sharing one RDB storage) searching a conditional space,
with pruned and failing trials, both logging through the callback to one real
`synmlops serve`: neither worker's study is ever stopped by the callback, and the Synergos
study ends as Optuna's own: the same trials, states, values and best trial."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import requests
from conftest import Server, wait_for

API = "/api/synergos/v1"
TRIALS_PER_WORKER = 8

WORKER = textwrap.dedent("""
    import json, math, sys

    import optuna

    from synergos_mlops import FederatedTracker, TrackerConfig
    from synergos_mlops.integrations.optuna import SynergosCallback

    storage_url, server, collaboration, first_model, seed, spool = sys.argv[1:]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        storage_url, engine_kwargs={"connect_args": {"timeout": 60}})


    def objective(trial):
        model = trial.suggest_categorical("model", ["svm", "forest"])
        if model == "svm":  # a conditional space: each branch suggests its own parameters
            c = trial.suggest_float("c", 1e-3, 1e3, log=True)
            kernel = trial.suggest_categorical("kernel", ["rbf", "linear", None])
            score = abs(math.log10(c)) + (0.5 if kernel == "linear" else 0.0)
        else:
            depth = trial.suggest_int("depth", 2, 8)
            score = abs(depth - 5) * 0.3 + 0.2
        for step in range(3):
            trial.report(score + (2 - step) * 0.1, step)
        if trial.number % 5 == 3:
            raise optuna.TrialPruned()
        if trial.number % 5 == 4:
            raise ValueError("this federated cycle broke")
        return score


    config = TrackerConfig(spool_dir=spool, flush_interval=0.05, flush_timeout=30,
                           connect_timeout=30, retry_interval=0.1)
    with FederatedTracker(server, config) as tracker:
        callback = SynergosCallback(tracker, collaboration, "p", "e", "conditional",
                                    "evaluate/loss")
        # The first trial of each worker takes its own branch, so the second worker meets a
        # study defined from the other branch's parameters.
        first = optuna.samplers.PartialFixedSampler({"model": first_model},
                                                    optuna.samplers.RandomSampler(int(seed)))
        study = optuna.load_study(study_name="conditional", storage=storage, sampler=first)
        study.optimize(objective, n_trials=1, callbacks=[callback], catch=(ValueError,))
        print("first trial done", flush=True)
        study = optuna.load_study(study_name="conditional", storage=storage,
                                  sampler=optuna.samplers.RandomSampler(int(seed)))
        study.optimize(objective, n_trials=TRIALS - 1, callbacks=[callback], catch=(ValueError,))
    print(json.dumps({"failures": getattr(callback, "failures", None),
                      "last": getattr(callback, "last_failure", None)}))
""").replace("TRIALS", str(TRIALS_PER_WORKER))


def test_two_optuna_workers_on_a_conditional_space_end_with_optunas_own_study(
    shared_server: Server, tmp_path: Path
) -> None:
    c = f"Workers {uuid.uuid4().hex[:6]}"
    storage_url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="conditional", storage=storage_url, direction="minimize")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    url = (
        shared_server.url
        + API
        + "/studies/"
        + "/".join(quote(x, safe="") for x in (c, "p", "e", "conditional"))
    )

    def worker(first_model: str, seed: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), storage_url, shared_server.url, c, first_model,
             str(seed), str(tmp_path / f"spool-{seed}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = worker("svm", 1)
    # The second worker starts once the first has defined the study from the svm branch.
    assert wait_for(lambda: requests.get(url, timeout=10).status_code == 200, timeout=120)
    second = worker("forest", 2)
    outputs = []
    for process in (first, second):
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs == [{"failures": 0, "last": None}] * 2

    own = optuna.load_study(study_name="conditional", storage=storage_url)
    frozen = own.get_trials(deepcopy=False)
    assert len(frozen) == 2 * TRIALS_PER_WORKER
    answer = requests.get(url, timeout=60).json()
    # The study's space is the union of what the trials suggested, whichever worker did.
    assert set(answer["search_space"]) == {"model", "c", "kernel", "depth"}
    assert answer["search_space"]["kernel"]["_value"] == ["rbf", "linear", None]
    assert sorted(t["number"] for t in answer["trials"]) == list(range(1, len(frozen) + 1))
    by_tuner = {t["tuner"]["trial"]: t for t in answer["trials"]}
    assert {t["tuner"]["tuner"] for t in answer["trials"]} == {"optuna"}
    assert set(by_tuner) == {t.number for t in frozen}
    states = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED"}
    for trial in frozen:
        logged = by_tuner[trial.number]
        assert logged["state"] == states[trial.state.name]
        assert logged["hyperparameters"] == trial.params
        assert {k: type(v) for k, v in logged["hyperparameters"].items()} == {
            k: type(v) for k, v in trial.params.items()
        }
        assert logged["outside_space"] == []
        if trial.state.name == "FAIL":  # Optuna has no value: nor has the study's trial
            assert trial.value is None and logged["value"] is None
            last = trial.intermediate_values[max(trial.intermediate_values)]
            assert logged["last_value"] == pytest.approx(last)  # shown apart
        else:  # complete, or pruned (Optuna's value: its last intermediate value)
            assert logged["value"] == pytest.approx(trial.value)
            assert logged["last_value"] == logged["value"]
    assert {t.state.name for t in frozen} == {"COMPLETE", "FAIL", "PRUNED"}
    assert {t.params["model"] for t in frozen} == {"svm", "forest"}
    assert answer["best"]["tuner"]["trial"] == own.best_trial.number
    assert answer["best"]["value"] == pytest.approx(own.best_value)
    assert answer["best"]["hyperparameters"] == own.best_params
    assert [h["value"] for h in answer["history"]] == [
        by_tuner[t.number]["value"]
        for t in sorted((t for t in frozen if t.state.name == "COMPLETE"),
                        key=lambda t: by_tuner[t.number]["number"])
    ]  # fmt: skip
    # Importance takes the parameters a branch does not have (absent, not an error).
    complete = [t for t in frozen if t.state.name == "COMPLETE"]
    varying = {n for n in answer["search_space"]
               if len({repr(t.params.get(n, "absent")) for t in complete}) > 1}  # fmt: skip
    assert set(answer["importance"]["params"]) == varying and varying
    assert sum(answer["importance"]["params"].values()) == pytest.approx(1.0)
