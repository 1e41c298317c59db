"""The file-store mirror in-process: what an original Synergos TTP wrote (mlflow 1.7.2's
layout, written here byte for byte) becomes federated runs in a real SQLite database, and the
untidy cases a live store has are skipped with their reasons."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from legacy_store import append_points, write_experiment, write_run
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

from synergos_mlops.federation import ExperimentIds
from synergos_mlops.legacy import FileStoreMirror
from synergos_mlops.storage.runs import resolve_run as resolve_tracked_run
from synergos_mlops.views.federated_runs import Backend, resolve_run, run_detail

LOSSES = {
    "global_train_loss": [(1000 + r, 1 / (r + 1), r) for r in range(3)],
    "global_evaluate_loss": [(1000 + r, 2 / (r + 1), r) for r in range(3)],
    "worker_1_local_loss": [(1000 + r, 0.5 + r, r) for r in range(3)],
    "worker_2_local_loss": [(1000 + r, 0.6 + r, r) for r in range(3)],
}
# Three participants' and stages' values of one class on one step, as the old logger did.
STATISTICS = {
    "accuracy_class_0": [(2000, 0.9, 1), (2001, 0.8, 1), (2002, 0.7, 1)],
    "accuracy_class_1": [(2000, 0.6, 2), (2001, 0.5, 2), (2002, 0.4, 2)],
    "R2": [(2003, 0.1, 0), (2004, 0.2, 0)],
}


@pytest.fixture
def store(tmp_path: Path) -> SqlAlchemyStore:
    return SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "fs"
    write_experiment(folder, "0", "Default")
    write_experiment(folder, "1", "hospitals_>_sepsis_>_mlp")
    return folder


def _client(store: SqlAlchemyStore) -> MlflowClient:
    return MlflowClient(store.db_uri)


def _detail(store: SqlAlchemyStore, run: str = "run-1") -> dict[str, object]:
    backend = Backend(store.ManagedSessionMaker, None)
    found = resolve_run(backend, "hospitals", "sepsis", "mlp", run)
    return run_detail(backend, found)


def _history(store: SqlAlchemyStore, run_uuid: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in _client(store).get_metric_history(run_uuid, key)]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        + str(path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_mirror_translates_the_old_keys_into_a_federated_run(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, _ = write_run(
        root, "1", "run-1", params={"rounds": 3, "algorithm": "FedProx"},
        metrics={**LOSSES, **STATISTICS},
        artifacts={"global_model.pt": b"g", "local_model_worker_3.pt": b"l3"},
    )  # fmt: skip
    report = FileStoreMirror(root, store).sync()
    assert report.problems == {}
    detail = _detail(store)
    assert detail["source"] == "file-store"
    assert detail["hyperparameters"] == {"algorithm": "FedProx", "rounds": "3"}
    assert [p["id"] for p in detail["participants"]] == ["worker_1", "worker_2", "worker_3"]
    assert detail["metric_keys"] == ["evaluate/loss", "train/loss"]
    # The run keeps the TTP's own run id, so the TTP's cached ids and the server agree.
    assert detail["mlflow"]["run_id"] == run_uuid
    assert _history(store, run_uuid, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    participants = {p["id"]: p["mlflow_run_id"] for p in detail["participants"]}
    assert _history(store, participants["worker_2"], "train/loss") == [
        (0, 0.6), (1, 1.6), (2, 2.6),
    ]  # fmt: skip
    unattributed = detail["unattributed"]
    assert unattributed is not None and "attributable to no participant" in unattributed["note"]
    kept = {
        s["key"]: [(p["step"], p["value"]) for p in s["points"]] for s in unattributed["statistics"]
    }
    assert kept == {
        key: [(step, value) for _, value, step in points] for key, points in STATISTICS.items()
    }


def test_a_second_pass_and_a_restart_store_nothing_twice(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, _ = write_run(root, "1", "run-1", metrics={**LOSSES, **STATISTICS})
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    assert mirror.sync().points == 0
    FileStoreMirror(root, SqlAlchemyStore(store.db_uri, "mlflow-artifacts:/")).sync()
    assert _history(store, run_uuid, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert len(_history(store, run_uuid, "accuracy_class_0")) == 3
    runs = _client(store).search_runs(["1"])
    assert len(runs) == 3  # the federated run and its two participants, once each


def test_points_appended_to_a_running_run_arrive_and_a_half_written_line_waits(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES, status=1)
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    append_points(folder, "global_train_loss", [(1003, 0.2, 3)])
    with (folder / "metrics" / "global_train_loss").open("a") as handle:
        handle.write("1004 0.1")  # the writer has not finished this line
    assert mirror.sync().points == 1
    assert _history(store, run_uuid, "train/loss")[-1] == (3, 0.2)
    with (folder / "metrics" / "global_train_loss").open("a") as handle:
        handle.write(" 4\n")
    mirror.sync()
    assert _history(store, run_uuid, "train/loss")[-1] == (4, 0.1)
    assert _client(store).get_run(run_uuid).info.status == "RUNNING"


def test_run_status_and_end_time_follow_meta_yaml(root: Path, store: SqlAlchemyStore) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES, status=1)
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    write_run(root, "1", "run-1", run_uuid=run_uuid, status=3)
    mirror.sync()
    info = _client(store).get_run(run_uuid).info
    assert (info.status, info.end_time) == ("FINISHED", 1_600_000_100_000)
    children = [p["status"] for p in _detail(store)["participants"]]
    assert children == ["FINISHED", "FINISHED"]


def test_truncated_meta_yaml_is_skipped_with_its_reason_and_read_once_complete(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES)
    complete = (folder / "meta.yaml").read_text()
    (folder / "meta.yaml").write_text(complete[:40])
    mirror = FileStoreMirror(root, store)
    report = mirror.sync()
    assert list(report.problems) == [str(folder)]
    assert "meta.yaml" in report.problems[str(folder)]
    (folder / "meta.yaml").write_text(complete)
    assert mirror.sync().problems == {}
    assert _history(store, run_uuid, "train/loss")[0] == (0, 1.0)


def test_a_run_seen_before_its_name_tag_is_written_waits_for_its_name(
    root: Path, store: SqlAlchemyStore
) -> None:
    # mlflow 1.7.2 writes a run's meta.yaml (name '') before its tags, mlflow.runName last: a
    # pass between the two must not name the federated run by its uuid for good.
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES, status=1)
    name_tag = folder / "tags" / "mlflow.runName"
    name_tag.unlink()
    mirror = FileStoreMirror(root, store)
    assert mirror.sync().problems == {}
    name_tag.write_text("")  # created, not written yet
    assert mirror.sync().problems == {}
    name_tag.write_text("run-1")
    mirror.sync()
    assert _detail(store)["mlflow"]["run_id"] == run_uuid
    assert _history(store, run_uuid, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_a_run_that_never_gets_a_name_is_shown_under_its_run_id(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES)
    (folder / "tags" / "mlflow.runName").unlink()
    os.utime(folder / "meta.yaml", (1_600_000_000, 1_600_000_000))  # written long ago
    FileStoreMirror(root, store).sync()
    assert _detail(store, run_uuid)["mlflow"]["run_id"] == run_uuid


def _rewrite_within_the_same_tick(path: Path, text: str) -> None:
    """Rewrite a file as a writer would within one tick of the file system's clock: same size,
    and the same time as before (and its folder's)."""
    before, folder = path.stat(), path.parent.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.utime(path.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))


def test_a_tag_rewritten_to_the_same_size_in_the_same_clock_tick_is_still_read(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES, status=1)
    (folder / "tags" / "phase").write_text("train")
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    assert _client(store).get_run(run_uuid).data.tags["phase"] == "train"
    _rewrite_within_the_same_tick(folder / "tags" / "phase", "final")
    mirror.sync()
    assert _client(store).get_run(run_uuid).data.tags["phase"] == "final"


def test_a_participant_artifact_added_in_the_same_clock_tick_as_a_pass_is_found(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(
        root, "1", "run-1", metrics=LOSSES, status=1, artifacts={"local_model_worker_1.pt": b"1"}
    )
    artifacts = folder / "artifacts"
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    seen = artifacts.stat()
    (artifacts / "local_model_worker_9.pt").write_bytes(b"9")
    os.utime(artifacts, ns=(seen.st_atime_ns, seen.st_mtime_ns))  # the folder looks unchanged
    mirror.sync()
    assert [p["id"] for p in _detail(store)["participants"]] == ["worker_1", "worker_2", "worker_9"]


def test_what_settled_long_ago_is_not_read_again() -> None:
    from synergos_mlops.legacy._filestore import SETTLE_NS, trusted

    now = time.time_ns()
    assert trusted(("sig",), now - SETTLE_NS - 10**9) == ("sig",)
    assert trusted(("sig",), now) is None  # may still change unseen
    assert trusted(("sig",), now + SETTLE_NS + 10**9) == ("sig",)  # a writer's clock ahead


def test_a_metric_line_that_is_no_point_is_reported_and_the_rest_kept(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES)
    with (folder / "metrics" / "global_train_loss").open("a") as handle:
        handle.write("garbage here please\n1005 0.05 5\n")
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    assert any("garbage" in event for event in mirror.events)
    assert _history(store, run_uuid, "train/loss")[-1] == (5, 0.05)


def test_links_out_of_the_store_are_never_read(
    root: Path, store: SqlAlchemyStore, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("1 42.0 0\n")
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES)
    os.symlink(secret, folder / "metrics" / "stolen")
    other_uuid, other = write_run(root, "1", "run-2", metrics=LOSSES)
    (other / "meta.yaml").unlink()
    os.symlink(secret, other / "meta.yaml")
    report = FileStoreMirror(root, store).sync()
    assert "links outside the store" in report.problems[str(folder)]
    assert "links outside the store" in report.problems[str(other)]
    assert _client(store).get_run(run_uuid).data.metrics.get("stolen") is None


def test_a_removed_run_folder_marks_its_run_deleted_and_nothing_else(
    root: Path, store: SqlAlchemyStore
) -> None:
    import shutil

    gone, folder = write_run(root, "1", "run-1", metrics=LOSSES)
    kept, _ = write_run(root, "1", "run-2", metrics=LOSSES)
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    shutil.rmtree(folder)
    mirror.sync()
    client = _client(store)
    assert client.get_run(gone).info.lifecycle_stage == "deleted"
    assert client.get_run(kept).info.lifecycle_stage == "active"
    assert len(_history(store, kept, "train/loss")) == 3
    assert any("removed" in event for event in mirror.events)


def test_a_run_known_from_ingest_is_joined_not_duplicated(
    root: Path, store: SqlAlchemyStore
) -> None:
    ids = ExperimentIds("hospitals", "sepsis", "mlp")
    tracked = resolve_tracked_run(store, ids, "run-1", ["worker_1"])
    run_uuid, _ = write_run(root, "1", "run-1", params={"rounds": 3}, metrics=LOSSES)
    FileStoreMirror(root, store).sync()
    detail = _detail(store)
    assert detail["mlflow"]["run_id"] == tracked.run_id != run_uuid
    by_id = {p["id"]: p["mlflow_run_id"] for p in detail["participants"]}
    assert by_id["worker_1"] == tracked.participants["worker_1"]
    assert detail["hyperparameters"] == {"rounds": "3"}
    experiments = [e.name for e in _client(store).search_experiments()]
    assert experiments.count("hospitals/sepsis/mlp") == 1


def test_an_experiment_with_another_name_is_shown_as_it_is(
    root: Path, store: SqlAlchemyStore
) -> None:
    write_experiment(root, "2", "plain")
    # A plain MLflow user logs without steps: every point on step 0, each one kept.
    run_uuid, _ = write_run(root, "2", "r", metrics={"loss": [(1, 0.9, 0), (2, 0.8, 0)]})
    FileStoreMirror(root, store).sync()
    client = _client(store)
    experiment = client.get_experiment_by_name("plain")
    assert experiment is not None
    assert client.get_run(run_uuid).info.experiment_id == experiment.experiment_id
    assert _history(store, run_uuid, "loss") == [(0, 0.9), (0, 0.8)]


def test_the_mirror_never_writes_into_the_file_store(root: Path, store: SqlAlchemyStore) -> None:
    write_run(root, "1", "run-1", metrics={**LOSSES, **STATISTICS}, artifacts={"a.pt": b"1"})
    before = _snapshot(root)
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    mirror.sync()
    assert _snapshot(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["0", "1"]


def test_a_store_per_project_as_an_earlier_ttp_wrote_it_is_read_too(
    tmp_path: Path, store: SqlAlchemyStore
) -> None:
    # An earlier TTP gave every project its own file store, <root>/<collaboration>/<project>/,
    # and named the experiment after the experiment id alone.
    root = tmp_path / "fs"
    nested = root / "hospitals" / "sepsis"
    write_experiment(nested, "0", "Default")
    write_experiment(nested, "1", "mlp")
    run_uuid, _ = write_run(nested, "1", "run-1", params={"rounds": 3}, metrics=LOSSES)
    report = FileStoreMirror(root, store).sync()
    assert report.problems == {}
    detail = _detail(store)
    assert detail["mlflow"]["run_id"] == run_uuid
    assert [p["id"] for p in detail["participants"]] == ["worker_1", "worker_2"]
    names = sorted(e.name for e in _client(store).search_experiments())
    assert names == ["Default", "hospitals/sepsis/mlp"]


def test_points_of_a_run_deleted_in_the_server_wait_and_arrive_once_it_is_restored(
    root: Path, store: SqlAlchemyStore
) -> None:
    run_uuid, folder = write_run(root, "1", "run-1", metrics=LOSSES, status=1)
    kept_uuid, kept = write_run(root, "1", "run-2", metrics=LOSSES, status=1)
    mirror = FileStoreMirror(root, store)
    mirror.sync()
    client = _client(store)
    client.delete_run(run_uuid)  # someone deletes it in MLflow's UI; the TTP keeps writing
    append_points(folder, "global_train_loss", [(1003, 0.2, 3)])
    append_points(kept, "global_train_loss", [(1003, 0.25, 3)])
    report = mirror.sync()
    assert "metrics not stored" in report.problems[str(folder)]
    assert _history(store, kept_uuid, "train/loss")[-1] == (3, 0.25)  # the other run is kept
    client.restore_run(run_uuid)
    assert mirror.sync().problems == {}
    assert _history(store, run_uuid, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.2)]


def test_a_pass_says_how_many_runs_it_has_read_of_how_many_it_found(
    root: Path, store: SqlAlchemyStore, tmp_path: Path
) -> None:
    for i in range(4):
        write_run(root, "1", f"run-{i}", metrics=LOSSES)
    _, broken = write_run(root, "1", "run-broken", metrics=LOSSES)
    (broken / "meta.yaml").write_text("run_uuid: [")
    seen: list[tuple[int, int]] = []
    report = FileStoreMirror(root, store).sync(
        on_progress=lambda read, found: seen.append((read, found))
    )
    # Listed first (0 read), then one step per run folder, the skipped one too, up to all of them.
    assert seen == [(i, 5) for i in range(6)]
    assert report.runs == 4 and list(report.problems) == [str(broken)]


def test_the_status_file_says_how_far_the_first_pass_is_until_it_ends(
    root: Path, tmp_path: Path
) -> None:
    from synergos_mlops.legacy import FileStoreSync, read_status

    for i in range(3):
        write_run(root, "1", f"run-{i}", metrics=LOSSES)
    status = tmp_path / "sync.json"
    sync = FileStoreSync(root, f"sqlite:///{tmp_path / 'sync.db'}", status, echo=lambda _: None)
    written: list[dict[str, object]] = []
    write = sync._write

    def keep(document: dict[str, object]) -> None:
        written.append(document)
        write(document)

    sync._write = keep  # type: ignore[method-assign]
    sync.start()
    try:
        while not any("last_pass" in d for d in written):
            sync.stop_event.wait(0.05)
    finally:
        sync.stop()
    progress = [d["reading"] for d in written if "reading" in d]
    assert progress[0] == {"runs_read": 0, "runs_found": 3}
    assert progress[-1] == {"runs_read": 3, "runs_found": 3}
    final = read_status(status)
    assert final is not None and "reading" not in final and final["runs"] == 3
