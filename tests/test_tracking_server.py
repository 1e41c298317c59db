"""The tracker through a real `synmlops serve`, read back with the plain MlflowClient."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker, InvalidIdError
from synergos_mlops.federation import CLASS_STATISTICS

HYPER = {"algorithm": "FedProx", "rounds": 3, "epochs": 2, "lr": 0.001, "mu": 0.1}


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_a_federated_cycle_maps_onto_mlflow_as_the_design_says(
    shared_server: Server, tmp_path: Path
) -> None:
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))
    weights = tmp_path / "global_model.pt"
    weights.write_bytes(b"global weights")
    predictions = tmp_path / "inference_predictions_evaluate.txt"
    predictions.write_text("0\n1\n")
    with tracker.run(collaboration="hospitals", project="heart", experiment="fedprox",
                     run="cycle-1", hyperparameters=HYPER,
                     participants=["worker_1", "worker_2"]) as run:  # fmt: skip
        for round_ in range(3):
            run.log_metrics({"train/loss": [0.7, 0.6, 0.5][round_]}, step=round_)
            for index, worker in enumerate(["worker_1", "worker_2"]):
                run.log_metrics({"train/loss": 0.8 - index / 10}, step=round_, participant=worker)
                for epoch in range(2):
                    run.log_epoch_metrics(
                        {"train/loss": epoch + round_}, round=round_, epoch=epoch,
                        participant=worker,
                    )  # fmt: skip
            run.log_statistics(
                {
                    "worker_1": {"accuracy": [0.91, 0.88], "roc_auc_score": [0.9, 0.9], "R2": 0.5},
                    None: {"accuracy": [0.5, 0.6], "MSE": math.nan},
                },
                stage="evaluate",
                step=round_,
            )
            run.log_model(weights, round=round_, epoch=1)
        run.log_model(weights)
        run.log_model(b"local", participant="worker_1", name="local_model_worker_1.pt")
        run.log_loss_history({"train": {"0": 0.7}})
        run.log_inference(predictions, "worker_2", stage="evaluate")
    tracker.close()

    client = MlflowClient(shared_server.url)
    experiment = client.get_experiment_by_name("hospitals/heart/fedprox")
    assert experiment is not None and experiment.experiment_id == run.experiment_id
    assert {
        k: v for k, v in experiment.tags.items() if k.startswith(("synergos.", "mlflow.exp"))
    } == {
        "synergos.collaboration": "hospitals",
        "synergos.project": "heart",
        "synergos.experiment": "fedprox",
        "mlflow.experimentKind": "custom_model_development",
    }
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    parent = client.get_run(run.run_id)
    assert parent.info.run_name == "cycle-1" and parent.info.status == "FINISHED"
    assert parent.data.tags["synergos.run"] == "cycle-1"
    assert parent.data.tags["synergos.role"] == "federation"
    assert parent.data.params == {k: str(v) for k, v in HYPER.items()}
    assert steps_of(client, run.run_id, "train/loss") == [(0, 0.7), (1, 0.6), (2, 0.5)]
    assert steps_of(client, run.run_id, "evaluate/accuracy/class_1") == [
        (0, 0.6),
        (1, 0.6),
        (2, 0.6),
    ]
    assert math.isnan(parent.data.metrics["evaluate/MSE"])
    assert artifact_files(client, run.run_id) == {
        "models/global/global_model.pt",
        "loss_history/loss_history.json",
        *(f"checkpoints/round_{r}/epoch_1/global_model.pt" for r in range(3)),
    }
    for index, worker in enumerate(["worker_1", "worker_2"]):
        child = client.get_run(run.participant_run_id(worker))
        assert child.info.run_name == worker and child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == run.run_id
        assert child.data.tags["synergos.participant"] == worker
        assert child.data.tags["synergos.role"] == "participant"
        assert steps_of(client, child.info.run_id, "train/loss") == [
            (r, 0.8 - index / 10) for r in range(3)
        ]
        assert steps_of(client, child.info.run_id, "train/epoch/loss") == [
            (r * 2 + e, float(e + r)) for r in range(3) for e in range(2)
        ]
    first = client.get_run(run.participant_run_id("worker_1"))
    assert "accuracy" in CLASS_STATISTICS
    assert steps_of(client, first.info.run_id, "evaluate/accuracy/class_0") == [
        (r, 0.91) for r in range(3)
    ]
    assert first.data.metrics["evaluate/R2"] == 0.5
    assert artifact_files(client, first.info.run_id) == {"models/local/local_model_worker_1.pt"}
    second = run.participant_run_id("worker_2")
    assert artifact_files(client, second) == {
        "inference/evaluate/inference_predictions_evaluate.txt"
    }


def test_logging_a_run_again_reuses_its_runs_and_keeps_one_point_per_step(
    shared_server: Server, tmp_path: Path
) -> None:
    ids = {"collaboration": "c", "project": "p", "experiment": "again", "run": "r"}
    seen = []
    for attempt in range(2):
        with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
            with tracker.run(**ids, hyperparameters=HYPER, participants=["w1"]) as run:
                for step in range(5):
                    run.log_metrics({"evaluate/loss": step + attempt}, step=step, participant="w1")
                    run.log_metrics({"evaluate/loss": step * 10 + attempt}, step=step)
            seen.append((run.experiment_id, run.run_id, run.participant_run_id("w1")))
    assert seen[0] == seen[1]
    client = MlflowClient(shared_server.url)
    experiment_id, run_id, child_id = seen[0]
    assert len(client.search_runs([experiment_id])) == 2
    assert steps_of(client, run_id, "evaluate/loss") == [(s, s * 10 + 1.0) for s in range(5)]
    assert steps_of(client, child_id, "evaluate/loss") == [(s, s + 1.0) for s in range(5)]
    assert client.get_run(child_id).data.metrics["evaluate/loss"] == 5.0


def test_a_failing_block_ends_the_runs_failed_with_everything_kept(
    shared_server: Server, tmp_path: Path
) -> None:
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))
    run = tracker.run("c", "p", "failing", "r", participants=["w1"])
    with pytest.raises(ValueError, match="diverged"), run:
        run.log_metrics({"train/loss": 9.0}, step=0, participant="w1")
        raise ValueError("diverged")
    tracker.close()
    client = MlflowClient(shared_server.url)
    assert client.get_run(run.run_id).info.status == "FAILED"
    child = client.get_run(run.participant_run_id("w1"))
    assert child.info.status == "FAILED" and child.data.metrics == {"train/loss": 9.0}


def test_participants_added_together_are_child_runs_that_their_points_then_reach(
    shared_server: Server, tmp_path: Path
) -> None:
    names = [f"site-{i}" for i in range(30)]
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))
    with tracker, tracker.run("c", "p", "together", "r", participants=["site-0"]) as run:
        run.add_participants([*names, "site-3"])
        assert sorted(run.participants) == sorted(names)
        for index, name in enumerate(names):
            run.log_metrics({"train/loss": index / 10}, step=1, participant=name)
        with pytest.raises(InvalidIdError, match="bad/id"):
            run.add_participants(["site-99", "bad/id"])
        assert "site-99" not in run.participants
    client = MlflowClient(shared_server.url)
    found = {r.info.run_name: r for r in client.search_runs([run.experiment_id])}
    assert sorted(found) == sorted([*names, "r"])
    for index, name in enumerate(names):
        child = found[name]
        assert child.info.run_id == run.participant_run_id(name)
        assert child.data.tags["mlflow.parentRunId"] == run.run_id
        assert child.info.status == "FINISHED"
        assert steps_of(client, child.info.run_id, "train/loss") == [(1, index / 10)]


def test_threads_of_one_orchestrator_log_to_one_run_and_race_to_create_it_once(
    shared_server: Server, tmp_path: Path
) -> None:
    trackers = [FederatedTracker(shared_server.url, fast_config(tmp_path)) for _ in range(2)]
    runs: list[object] = []
    barrier = threading.Barrier(6)

    def work(index: int) -> None:
        tracker = trackers[index % 2]
        barrier.wait()
        run = tracker.run("c", "p", "threads", "r", participants=["w1"])
        runs.append(run)
        participant = f"w{index % 3}"
        for step in range(200):
            run.log_metrics({f"train/t{index}": step}, step=step, participant=participant)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tracker in trackers:
        tracker.close()
    assert len({r.run_id for r in runs}) == 1  # type: ignore[attr-defined]
    client = MlflowClient(shared_server.url)
    found = client.search_runs([runs[0].experiment_id])  # type: ignore[attr-defined]
    assert sorted(r.info.run_name for r in found) == ["r", "w0", "w1", "w2"]
    for index in range(6):
        child = runs[0].participant_run_id(f"w{index % 3}")  # type: ignore[attr-defined]
        assert steps_of(client, child, f"train/t{index}") == [(s, float(s)) for s in range(200)]


def test_every_point_is_stored_once_when_the_server_stops_mid_cycle_and_comes_back(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    tracker = FederatedTracker(server.url, fast_config(tmp_path, flush_timeout=120))
    with tracker.run("c", "p", "restart", "r", participants=["w1", "w2"]) as run:
        for step in range(10):
            run.log_metrics({"train/loss": step}, step=step, participant="w1")
        run.flush()
        server.stop(signal.SIGTERM)
        for step in range(10, 30):
            run.log_metrics({"train/loss": step}, step=step, participant="w1")
            run.log_metrics({"train/loss": -step}, step=step)
        with pytest.warns(RuntimeWarning, match="40 metric points, params and tags are not stored"):
            assert run.flush(timeout=1) is False
        server = server_factory(store, port=server.port)
        for step in range(30, 40):
            run.log_metrics({"train/loss": step}, step=step, participant="w2")
    tracker.close()
    client = MlflowClient(server.url)
    assert steps_of(client, run.participant_run_id("w1"), "train/loss") == [
        (s, float(s)) for s in range(30)
    ]
    assert steps_of(client, run.run_id, "train/loss") == [(s, float(-s)) for s in range(10, 30)]
    assert steps_of(client, run.participant_run_id("w2"), "train/loss") == [
        (s, float(s)) for s in range(30, 40)
    ]
    assert client.get_run(run.run_id).info.status == "FINISHED"


DYING_ORCHESTRATOR = textwrap.dedent(
    """
    import os, sys, warnings
    from pathlib import Path
    from synergos_mlops import FederatedTracker, TrackerConfig
    url, spool = sys.argv[1], Path(sys.argv[2])
    tracker = FederatedTracker(url, TrackerConfig(spool_dir=spool, flush_interval=0.05,
                                                  retry_interval=0.1))
    run = tracker.run("c", "p", "dying", "r", participants=["w1"])
    print(run.run_id, run.participant_run_id("w1"), flush=True)
    sys.stdin.readline()                  # the server is stopped now
    for step in range(1000):
        run.log_metrics({"train/loss": step, "train/acc": step / 1000}, step=step,
                        participant="w1")
    warnings.simplefilter("ignore")
    tracker.flush(timeout=0.5)            # gives up: the points wait in the spool
    os._exit(3)                           # dies without closing anything
    """
)


def test_a_new_tracker_sends_what_a_dead_orchestrator_left_in_the_spool(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", DYING_ORCHESTRATOR, server.url, str(spool)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    run_id, child_run_id = child.stdout.readline().split()
    server.stop(signal.SIGTERM)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(timeout=120) == 3
    assert list(spool.glob("*/*/*.batch"))

    server = server_factory(store, port=server.port)
    with FederatedTracker(server.url, fast_config(tmp_path)) as tracker:
        assert tracker.flush() is True
    client = MlflowClient(server.url)
    assert steps_of(client, child_run_id, "train/loss") == [(s, float(s)) for s in range(1000)]
    assert len(client.get_metric_history(child_run_id, "train/acc")) == 1000
    assert client.get_run(run_id).info.status == "RUNNING"
    assert not list(spool.glob("*/*/*.batch"))


def test_an_end_that_finds_the_server_away_waits_in_the_spool_and_ends_the_runs_later(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    config = fast_config(tmp_path, connect_timeout=2.0, flush_timeout=2.0)
    tracker = FederatedTracker(server.url, config)
    run = tracker.run("c", "p", "e", "ended-late", participants=["w1", "w2"])
    assert tracker.flush() is True
    ids = [run.run_id, *(run.participant_run_id(p) for p in ("w1", "w2"))]
    server.stop(signal.SIGTERM)
    for step in range(50):  # points the server never saw, then the end
        run.log_metrics({"train/loss": float(step)}, step=step, participant="w1")
    with warnings.catch_warnings(record=True) as said:  # points unsent, then the end
        warnings.simplefilter("always")
        run.end("FINISHED")
        tracker.close(timeout=1.0)
    assert any("its end waits in the spool with its points" in str(w.message) for w in said)
    assert len(list(config.spool_dir.glob("*/*/*.batch"))) >= 2  # points, then the end

    server = server_factory(store, port=server.port)
    with FederatedTracker(server.url, fast_config(tmp_path)) as again:
        assert again.flush() is True
    client = MlflowClient(server.url)
    assert [client.get_run(i).info.status for i in ids] == ["FINISHED"] * 3
    assert steps_of(client, ids[1], "train/loss") == [(s, float(s)) for s in range(50)]
    assert not list(config.spool_dir.glob("*/*/*.batch"))
