"""The ingester's scanning and parsing layer: pure functions over folders, no server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ingest_trees import PARTICIPANTS, touch_later, write_json, write_run, write_worker

from synergos_mlops.errors import IngestError
from synergos_mlops.ingest import WorkerOutputs, parse_worker_outputs, scan
from synergos_mlops.ingest._parse import (
    FileProblem,
    parse_global_loss,
    parse_local_loss,
    parse_statistics,
    read_bytes,
)
from synergos_mlops.ingest._scan import Kind

IDS = ("collab", "proj", "exp", "run_1")


def reasons(found: object) -> dict[str, str]:
    problems = [*found.problems, *found.skipped]  # type: ignore[attr-defined]
    return {p.where: p.reason for p in problems}


def test_scan_finds_run_folders_with_participants_and_checkpoints(tmp_path: Path) -> None:
    write_run(tmp_path, "c1", "p", "e", "r1", rounds=3, epochs=2)
    write_run(tmp_path, "c2", "p", "e", "r1", rounds=1, checkpoints=False)
    found = scan(tmp_path)
    assert [r.label for r in found.runs] == ["c1/p/e/r1", "c2/p/e/r1"]
    assert found.problems == [] and found.skipped == []
    run = found.runs[0]
    assert run.participants == sorted(PARTICIPANTS)
    checkpoints = [f for f in run.files if f.round is not None]
    assert {(f.round, f.epoch) for f in checkpoints} == {(r, e) for r in range(3) for e in range(2)}
    assert {f.kind for f in run.files} == {
        Kind.GLOBAL_MODEL, Kind.GLOBAL_LOSS, Kind.LOCAL_MODEL, Kind.LOCAL_LOSS,
    }  # fmt: skip


def test_scan_refuses_outputs_that_do_not_exist(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        scan(tmp_path / "missing")


def test_scan_reports_files_and_folders_shallower_than_a_run_folder(tmp_path: Path) -> None:
    write_run(tmp_path, "c", "p", "e", "r")
    write_json(tmp_path / "c" / "p" / "global_loss_history.json", {})
    (tmp_path / "c" / "lonely" / "e").mkdir(parents=True)
    found = scan(tmp_path)
    problems = reasons(found)
    assert "file outside a run folder" in problems["c/p/global_loss_history.json"]
    assert "holds no run folders" in problems["c/lonely/e"]
    assert [r.label for r in found.runs] == ["c/p/e/r"]


def test_scan_skips_empty_run_folder_with_reason(tmp_path: Path) -> None:
    (tmp_path / "c" / "p" / "e" / "empty").mkdir(parents=True)
    found = scan(tmp_path)
    assert found.runs == []
    assert reasons(found) == {"c/p/e/empty": "run folder holds no known files"}


def test_scan_reports_unknown_files_and_folders_deeper_than_layout(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "c", "p", "e", "r", rounds=1, epochs=1)
    (folder / "notes.txt").write_text("hello")
    (folder / "extra" / "deeper").mkdir(parents=True)
    (folder / "checkpoints" / "round_x").mkdir()
    (folder / "checkpoints" / "round_0" / "epoch_0" / "more").mkdir()
    problems = reasons(scan(tmp_path))
    assert problems["c/p/e/r/notes.txt"] == "unknown file; not ingested"
    assert problems["c/p/e/r/extra"] == "unknown folder; not ingested"
    assert "not a round_<r> folder" in problems["c/p/e/r/checkpoints/round_x"]
    assert problems["c/p/e/r/checkpoints/round_0/epoch_0/more"] == "unknown folder; not ingested"


def test_scan_skips_link_pointing_outside_tree(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    folder = write_run(outputs, "c", "p", "e", "r", rounds=1, checkpoints=False)
    secret = tmp_path / "secret.json"
    secret.write_text('{"0": 1.0}')
    (folder / "local_loss_history_intruder.json").symlink_to(secret)
    (folder / "checkpoints").symlink_to(tmp_path, target_is_directory=True)
    (outputs / "c" / "p" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    found = scan(outputs)
    problems = reasons(found)
    outside = "link points outside the folder; not read"
    assert problems["c/p/e/r/local_loss_history_intruder.json"] == outside
    assert problems["c/p/e/r/checkpoints"] == outside
    assert problems["c/p/elsewhere"] == outside
    assert all(f.path.is_relative_to(outputs) for r in found.runs for f in r.files)
    assert "intruder" not in found.runs[0].participants


def test_scan_takes_file_link_inside_tree_under_its_own_name(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "c", "p", "e", "r", rounds=1, checkpoints=False)
    (folder / "local_model_worker_9.pt").symlink_to(folder / "global_model.pt")
    (folder / "checkpoints").symlink_to(folder, target_is_directory=True)
    found = scan(tmp_path)
    files = {f.name: f for f in found.runs[0].files}
    linked = files["outputs/local_model_worker_9.pt"]
    assert linked.path == (folder / "global_model.pt").resolve()
    assert linked.filename == "local_model_worker_9.pt"
    assert reasons(found)["c/p/e/r/checkpoints"] == "link to a folder; not followed"


def test_scan_never_opens_a_fifo(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "c", "p", "e", "r", rounds=1, checkpoints=False)
    os.mkfifo(folder / "local_loss_history_pipe.json")
    found = scan(tmp_path)
    assert reasons(found)["c/p/e/r/local_loss_history_pipe.json"] == "not a regular file; not read"


def test_scan_keeps_names_with_spaces_and_unicode(tmp_path: Path) -> None:
    write_run(
        tmp_path, "Hôpital Général", "projet α", "exp 1", "run 日本", participants=["wörker 1"]
    )
    found = scan(tmp_path)
    assert found.runs[0].ids == ("Hôpital Général", "projet α", "exp 1", "run 日本")
    assert found.runs[0].participants == ["wörker 1"]


def test_scan_skips_run_folder_whose_name_is_not_a_valid_id(tmp_path: Path) -> None:
    write_run(tmp_path, "c", "p", "e", "bad\tname", rounds=1, checkpoints=False)
    write_run(tmp_path, "c", "p", "e", "good", rounds=1, checkpoints=False, participants=["w\x01"])
    found = scan(tmp_path)
    problems = reasons(found)
    assert "must be printable" in problems["c/p/e/bad\tname"]
    assert "not ingested" in problems["c/p/e/good/local_model_w\x01.pt"]
    assert [r.label for r in found.runs] == ["c/p/e/good"]


def test_scan_attaches_worker_outputs_from_a_shared_folder_by_participant(tmp_path: Path) -> None:
    write_run(tmp_path / "out", *IDS, checkpoints=False)
    for participant in PARTICIPANTS:
        write_worker(tmp_path / "workers", participant, IDS)
    write_worker(tmp_path / "workers", "worker_1", ("c", "p", "e", "ghost"))
    found = scan(tmp_path / "out", [WorkerOutputs((tmp_path / "workers").resolve())])
    worker_files = [f for f in found.runs[0].files if f.stage is not None]
    assert len(worker_files) == 3 * len(PARTICIPANTS)
    assert {f.name for f in worker_files if f.participant == "worker_2"} == {
        "worker/worker_2/evaluate/inference_statistics_evaluate.json",
        "worker/worker_2/evaluate/inference_predictions_evaluate.txt",
        "worker/worker_2/evaluate/inference_scores_evaluate.txt",
    }
    assert any("no run folder in OUTPUTS" in p.reason for p in found.problems)


def test_scan_attaches_one_workers_own_folder_given_as_participant_equals_dir(
    tmp_path: Path,
) -> None:
    write_run(tmp_path / "out", *IDS, checkpoints=False)
    write_worker(tmp_path / "w1", None, IDS, stage="predict")
    worker = parse_worker_outputs(f"worker_1={tmp_path / 'w1'}")
    assert worker.participant == "worker_1"
    found = scan(tmp_path / "out", [worker])
    names = {f.name for f in found.runs[0].files if f.stage == "predict"}
    assert "worker/worker_1/predict/inference_scores_predict.txt" in names


def test_parse_worker_outputs_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        parse_worker_outputs(str(tmp_path / "nope"))
    with pytest.raises(IngestError, match="does not exist"):
        parse_worker_outputs(f"w1={tmp_path / 'nope'}")


def test_half_written_json_is_refused_to_be_retried(tmp_path: Path) -> None:
    folder = write_run(tmp_path, *IDS, rounds=1, checkpoints=False)
    (folder / "global_loss_history.json").write_text('{"train": {"0": 0.5, "1"')
    (folder / "local_loss_history_worker_1.json").write_text("")
    files = {f.name: f for f in scan(tmp_path).runs[0].files}
    with pytest.raises(FileProblem, match="not valid JSON"):
        parse_global_loss(files["outputs/global_loss_history.json"], [])
    with pytest.raises(FileProblem, match="empty"):
        parse_local_loss(files["outputs/local_loss_history_worker_1.json"], [])


def test_loss_history_leaves_out_rounds_and_values_it_cannot_use(tmp_path: Path) -> None:
    folder = write_run(tmp_path, *IDS, rounds=1, checkpoints=False)
    write_json(
        folder / "global_loss_history.json",
        {"train": {"0": 0.5, "x": 0.1, "1": "high", "2": 0.25}, "tune": {"0": 1}},
    )
    entry = next(f for f in scan(tmp_path).runs[0].files if f.kind is Kind.GLOBAL_LOSS)
    notes: list[str] = []
    assert parse_global_loss(entry, notes) == {"train": {0: 0.5, 2: 0.25}}
    assert len(notes) == 3


def test_statistics_are_read_bare_or_under_a_statistics_key(tmp_path: Path) -> None:
    write_run(tmp_path / "out", *IDS, rounds=1, checkpoints=False)
    write_worker(tmp_path / "w", "a", IDS, statistics={"statistics": {"accuracy": [0.5], "R2": 1}})
    write_worker(tmp_path / "w", "b", IDS, statistics={"accuracy": [0.5, "x"], "MSE": 0.2})
    found = scan(tmp_path / "out", [WorkerOutputs((tmp_path / "w").resolve())])
    stats = {f.participant: f for f in found.runs[0].files if f.kind is Kind.STATISTICS}
    assert parse_statistics(stats["a"], []) == {"accuracy": [0.5], "R2": 1}
    notes: list[str] = []
    assert parse_statistics(stats["b"], notes) == {"MSE": 0.2}
    assert len(notes) == 1


def test_a_file_that_moved_since_the_scan_is_not_read(tmp_path: Path) -> None:
    write_run(tmp_path, *IDS, rounds=1, checkpoints=False)
    entry = next(f for f in scan(tmp_path).runs[0].files if f.kind is Kind.GLOBAL_MODEL)
    with entry.path.open("ab") as handle:
        handle.write(b"more")
    with pytest.raises(FileProblem, match="changed since it was scanned"):
        read_bytes(entry)


def test_run_digest_changes_when_a_file_is_touched_or_added(tmp_path: Path) -> None:
    folder = write_run(tmp_path, *IDS, rounds=1, checkpoints=False)
    first = scan(tmp_path).runs[0].digest()
    assert scan(tmp_path).runs[0].digest() == first
    touch_later(folder / "global_model.pt")
    second = scan(tmp_path).runs[0].digest()
    assert second != first
    (folder / "local_model_worker_5.pt").write_bytes(b"x")
    assert scan(tmp_path).runs[0].digest() != second
