"""The buffering client, through the in-memory transport: batching, the spool, call-site checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tracking_support import MemoryTransport, fast_config

from synergos_mlops import FederatedTracker, InvalidIdError, InvalidValueError
from synergos_mlops.tracking import PARAM_VALUE_LIMIT, BatchRejectedError

IDS = {"collaboration": "c", "project": "p", "experiment": "e"}


def tracker_for(tmp_path: Path, transport: MemoryTransport, **config: object) -> FederatedTracker:
    return FederatedTracker(transport=transport, config=fast_config(tmp_path, **config))


def test_points_are_sent_in_large_batches_not_one_request_per_point(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport, batch_size=5000, flush_interval=30)
    with tracker.run(**IDS, run="r", participants=["w1"]) as run:
        for step in range(100):
            run.log_metrics({f"train/m{i}": float(i) for i in range(100)}, step=step)
    tracker.close()
    assert len(transport.points) == 10_000
    assert transport.requests <= 3  # 10,000 points: two full batches and a remainder


def test_participants_added_together_take_one_request_and_later_use_takes_none(
    tmp_path: Path,
) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport, flush_interval=30)
    run = tracker.run(**IDS, run="r")
    before = transport.resolves
    run.add_participants(f"w{i}" for i in range(100))
    run.add_participants(["w1", "w2"])
    for i in range(100):
        run.log_metrics({"train/loss": float(i)}, step=0, participant=f"w{i}")
    assert transport.resolves - before == 1
    tracker.close()
    assert {run_id for run_id, _, _ in transport.points} == {
        run.participant_run_id(f"w{i}") for i in range(100)
    }


def test_flush_waits_for_an_absent_destination_then_sends_everything(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r")
    transport.down = True
    run.log_metrics({"train/loss": 1.0}, step=0)
    with pytest.warns(RuntimeWarning, match="1 metric points, params and tags are not stored yet"):
        assert run.flush(timeout=0.3) is False
    assert transport.points == {}
    assert list(tracker.spool_path.glob("*/*.batch"))
    transport.down = False
    assert run.flush() is True
    assert transport.points == {("run-r", "train/loss", 0): 1.0}
    assert not list(tracker.spool_path.glob("*/*.batch"))
    tracker.close()


def test_a_new_tracker_sends_what_a_closed_tracker_left_in_the_spool(tmp_path: Path) -> None:
    transport = MemoryTransport()
    first = tracker_for(tmp_path, transport)
    run = first.run(**IDS, run="r")
    transport.down = True
    run.log_metrics({"train/loss": 0.5}, step=3)
    with pytest.warns(RuntimeWarning, match="wait in the spool"):
        first.close(timeout=0.2)
    transport.down = False
    second = tracker_for(tmp_path, transport)
    assert second.flush() is True
    assert transport.points == {("run-r", "train/loss", 3): 0.5}
    second.close()
    assert not list((tmp_path / "spool").glob("*/*/*.batch"))


def test_logging_a_point_again_keeps_the_latest_value(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    with tracker.run(**IDS, run="r") as run:
        run.log_metrics({"evaluate/loss": 0.9}, step=1)
        run.flush()
        run.log_metrics({"evaluate/loss": 0.7}, step=1)
        run.log_metrics({"evaluate/loss": 0.6}, step=1)
    tracker.close()
    assert transport.points == {("run-r", "evaluate/loss", 1): 0.6}


def test_a_refused_batch_is_kept_in_rejected_and_reported_by_flush(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r")
    transport.refuse_runs.add(run.run_id)
    run.log_metrics({"train/loss": 1.0}, step=0)
    with pytest.raises(BatchRejectedError, match="kept in"):
        run.flush()
    assert len(list(tracker.spool_path.glob("rejected/*.batch"))) == 1
    tracker.close()


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"train/loss": True}, "non-numeric value True"),
        ({"train/loss": "0.5"}, "non-numeric value '0.5'"),
        ({"train/loss": None}, "non-numeric value None"),
        ({"train/loss\n": 1.0}, "must be printable text"),
        ({"train/loss?": 1.0}, "metric key 'train/loss\\?' is refused"),
        ({"../loss": 1.0}, "metric key '../loss' is refused"),
        ({"x" * 251: 1.0}, "1 to 250 characters"),
    ],
)
def test_bad_metrics_are_refused_at_the_call_site(
    tmp_path: Path, metrics: dict[str, object], message: str
) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r")
    with pytest.raises(InvalidValueError, match=message):
        run.log_metrics(metrics, step=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="step 1.5 must be an integer"):
        run.log_metrics({"train/loss": 1.0}, step=1.5)  # type: ignore[arg-type]
    tracker.close()
    assert transport.points == {}


def test_ids_with_a_slash_are_refused_naming_the_id(tmp_path: Path) -> None:
    tracker = tracker_for(tmp_path, MemoryTransport())
    with pytest.raises(InvalidIdError, match="run id 'a/b' must not contain '/'"):
        tracker.run(**IDS, run="a/b")
    with pytest.raises(InvalidIdError, match="project id 'p/q'"):
        tracker.run(collaboration="c", project="p/q", experiment="e", run="r")
    run = tracker.run(**IDS, run="r")
    with pytest.raises(InvalidIdError, match="participant id 'w/1'"):
        run.log_metrics({"train/loss": 1.0}, step=0, participant="w/1")
    tracker.close()


def test_statistics_are_all_checked_before_any_is_logged(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r", participants=["w1"])
    with pytest.raises(InvalidValueError, match="evaluate/accuracy/class_1"):
        run.log_statistics(
            {None: {"R2": 0.5}, "w1": {"accuracy": [0.5, "high"]}}, stage="evaluate", step=0
        )
    run.log_statistics({None: {"R2": math.inf}, "w1": {"TPs": [1, 2]}}, stage="evaluate", step=2)
    tracker.close()
    assert transport.points == {
        ("run-r", "evaluate/R2", 2): math.inf,
        ("run-r-w1", "evaluate/TPs/class_0", 2): 1.0,
        ("run-r-w1", "evaluate/TPs/class_1", 2): 2.0,
    }


def test_epoch_metrics_use_a_step_growing_across_rounds(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r", hyperparameters={"epochs": 5})
    run.log_epoch_metrics({"train/loss": 0.3}, round=2, epoch=4, participant="w9")
    run.log_epoch_metrics({"train/loss": 0.2}, round=1, epoch=0, epochs_per_round=3)
    with pytest.raises(InvalidValueError, match="epoch 5 of round 0"):
        run.log_epoch_metrics({"train/loss": 0.3}, round=0, epoch=5)
    bare = tracker.run(**IDS, run="r2")
    with pytest.raises(InvalidValueError, match="epochs per round unknown"):
        bare.log_epoch_metrics({"train/loss": 0.3}, round=0, epoch=0)
    tracker.close()
    assert transport.points == {
        ("run-r-w9", "train/epoch/loss", 14): 0.3,
        ("run-r", "train/epoch/loss", 3): 0.2,
    }


def test_long_hyperparameters_are_truncated_in_the_param_and_kept_whole_as_artifact(
    tmp_path: Path,
) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    long = "layer," * 2000
    run = tracker.run(**IDS, run="r", hyperparameters={"model": long, "lr": 0.001})
    params = transport.params[run.run_id]
    assert params["lr"] == "0.001"
    assert len(params["model"]) == PARAM_VALUE_LIMIT
    assert params["model"].endswith("whole value is in the artifact hyperparameters.json]")
    whole = transport.artifacts[f"mlflow-artifacts:/1/{run.run_id}/artifacts/hyperparameters.json"]
    assert long in whole.decode()
    tracker.close()


def test_artifact_names_cannot_leave_their_folder(tmp_path: Path) -> None:
    tracker = tracker_for(tmp_path, MemoryTransport())
    run = tracker.run(**IDS, run="r")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"w")
    with pytest.raises(InvalidValueError, match="must not leave its folder"):
        run.log_model(weights, name="../../etc/passwd")
    with pytest.raises(InvalidValueError, match="must be relative"):
        run.log_artifact(weights, artifact_path="/tmp")
    with pytest.raises(InvalidValueError, match="must not leave its folder"):
        run.log_artifact(weights, artifact_path="models/../..")
    tracker.close()


def test_a_failing_block_ends_every_run_failed_and_keeps_what_was_logged(tmp_path: Path) -> None:
    transport = MemoryTransport()
    tracker = tracker_for(tmp_path, transport)
    run = tracker.run(**IDS, run="r", participants=["w1"])
    with pytest.raises(RuntimeError, match="round 2 broke"), run:
        run.log_metrics({"train/loss": 0.4}, step=1, participant="w1")
        raise RuntimeError("round 2 broke")
    tracker.close()
    assert transport.statuses == {"run-r": "FAILED", "run-r-w1": "FAILED"}
    assert transport.points == {("run-r-w1", "train/loss", 1): 0.4}
