"""`synmlops ingest`, `watch` and `serve --watch` against a real server, read back with the
plain MlflowClient."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SYNMLOPS, Server
from ingest_trees import (
    PARTICIPANTS,
    evaluate_loss,
    local_loss,
    touch_later,
    train_loss,
    write_checkpoint,
    write_global,
    write_json,
    write_run,
    write_worker,
)

import synergos_mlops.tracking
from synergos_mlops.federation import TAG_PARTICIPANT, TAG_ROLE, TAG_RUN
from synergos_mlops.ingest import DIGEST_TAG, IngestReport, Watcher, WorkerOutputs
from synergos_mlops.ingest import ingest as ingest_once

if not hasattr(synergos_mlops.tracking, "FederatedTracker"):
    pytest.skip("the FederatedTracker has not landed yet", allow_module_level=True)

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run  # noqa: E402


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ingest(
    outputs: Path, server: Server, workers: list[WorkerOutputs] | None = None
) -> IngestReport:
    return ingest_once(outputs, workers or [], tracking_uri=server.url)


def parent(client: MlflowClient, c: str, p: str, e: str, r: str) -> Run:
    experiment = client.get_experiment_by_name(f"{c}/{p}/{e}")
    assert experiment is not None
    runs = [
        run
        for run in client.search_runs([experiment.experiment_id], max_results=1000)
        if run.data.tags.get(TAG_RUN) == r and run.data.tags.get(TAG_ROLE) == "federation"
    ]
    assert len(runs) == 1, f"{len(runs)} parent runs for {r}"
    return runs[0]


def children(client: MlflowClient, run: Run) -> dict[str, Run]:
    found = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        max_results=1000,
    )
    by_participant: dict[str, Run] = {}
    for child in found:
        participant = child.data.tags[TAG_PARTICIPANT]
        assert participant not in by_participant, f"two child runs for {participant}"
        by_participant[participant] = child
    return by_participant


def history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    points = client.get_metric_history(run_id, key)
    steps = [p.step for p in points]
    assert len(steps) == len(set(steps)), f"{key} has a step twice: {steps}"
    return {p.step: p.value for p in points}


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= artifacts(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def test_ingest_maps_runs_onto_parent_and_participant_runs(
    shared_server: Server, tmp_path: Path
) -> None:
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    c1, c2 = unique("hospital"), unique("bank")
    write_run(outputs, c1, "p", "e", "r1", rounds=3, epochs=2)
    write_run(outputs, c1, "p", "e", "r2", rounds=2, checkpoints=False)
    write_run(outputs, c2, "p", "e2", "r1", rounds=1, participants=["worker_1"], checkpoints=False)
    for participant in PARTICIPANTS:
        write_worker(workers, participant, (c1, "p", "e", "r1"), stage="evaluate")

    report = ingest(outputs, shared_server, [WorkerOutputs(workers.resolve())])

    assert (report.count("new"), report.count("failed")) == (3, 0), report.summary()
    client = MlflowClient(shared_server.url)
    run = parent(client, c1, "p", "e", "r1")
    assert run.info.run_name == "r1"
    assert history(client, run.info.run_id, "train/loss") == {r: train_loss(r) for r in range(3)}
    assert history(client, run.info.run_id, "evaluate/loss") == {
        r: evaluate_loss(r) for r in range(3)
    }
    stored = artifacts(client, run.info.run_id)
    assert any(path.startswith("models/global/") for path in stored), stored
    assert "loss_history/global_loss_history.json" in stored
    for round_ in range(3):
        for epoch in range(2):
            assert any(p.startswith(f"checkpoints/round_{round_}/epoch_{epoch}/") for p in stored)
    participants = children(client, run)
    assert sorted(participants) == sorted(PARTICIPANTS)
    for index, participant in enumerate(sorted(PARTICIPANTS)):
        child = participants[participant]
        assert history(client, child.info.run_id, "train/loss") == {
            r: local_loss(index, r) for r in range(3)
        }
        assert child.data.metrics["evaluate/accuracy/class_1"] == pytest.approx(0.88)
        assert child.data.metrics["evaluate/R2"] == pytest.approx(0.5)
        local = artifacts(client, child.info.run_id)
        assert any(p.startswith("models/local/") for p in local), local
        assert {
            "inference/evaluate/inference_predictions_evaluate.txt",
            "inference/evaluate/inference_scores_evaluate.txt",
        } <= local
    assert history(client, participants["worker_1"].info.run_id, "evaluate/accuracy/class_0") == {
        2: pytest.approx(0.91)
    }
    other = parent(client, c2, "p", "e2", "r1")
    assert sorted(children(client, other)) == ["worker_1"]


def test_ingesting_the_same_tree_again_changes_nothing(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("again")
    write_run(tmp_path, c, "p", "e", "r", rounds=3, epochs=2)
    first = ingest(tmp_path, shared_server)
    assert first.count("new") == 1, first.summary()
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "r")
    before = (artifacts(client, run.info.run_id), history(client, run.info.run_id, "train/loss"))

    second = ingest(tmp_path, shared_server)

    assert (second.count("unchanged"), second.count("new"), second.count("updated")) == (1, 0, 0)
    run = parent(client, c, "p", "e", "r")
    assert (artifacts(client, run.info.run_id), history(client, run.info.run_id, "train/loss")) == (
        before
    )
    assert len(children(client, run)) == len(PARTICIPANTS)


def test_a_touched_but_unchanged_file_is_not_logged_again(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("touched")
    folder = write_run(tmp_path, c, "p", "e", "r", rounds=2, checkpoints=False)
    ingest(tmp_path, shared_server)
    touch_later(folder / "global_model.pt")
    report = ingest(tmp_path, shared_server)
    assert report.count("unchanged") == 1
    assert report.outcomes[0].files == 0
    assert ingest(tmp_path, shared_server).count("unchanged") == 1


def test_a_run_that_gained_files_is_updated_in_place(shared_server: Server, tmp_path: Path) -> None:
    c = unique("grows")
    folder = write_run(tmp_path, c, "p", "e", "r", rounds=2, epochs=1)
    ingest(tmp_path, shared_server)
    write_global(folder, rounds=4)
    write_checkpoint(folder, 3, 0, PARTICIPANTS)

    report = ingest(tmp_path, shared_server)

    assert report.count("updated") == 1, report.summary()
    assert report.outcomes[0].files == 3  # the history and the checkpoint's two models
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "r")
    assert history(client, run.info.run_id, "train/loss") == {r: train_loss(r) for r in range(4)}
    assert any(
        p.startswith("checkpoints/round_3/epoch_0/") for p in artifacts(client, run.info.run_id)
    )
    assert len(children(client, run)) == len(PARTICIPANTS)


def test_nothing_ingested_is_lost_when_files_vanish_or_break(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("vanish")
    folder = write_run(tmp_path, c, "p", "e", "r", rounds=3, checkpoints=False)
    ingest(tmp_path, shared_server)
    (folder / "global_model.pt").unlink()
    (folder / "global_loss_history.json").write_text('{"train": {"0": 0.1')  # half-written

    report = ingest(tmp_path, shared_server)

    assert report.count("failed") == 0
    assert any("not valid JSON" in n.reason for o in report.outcomes for n in o.notes)
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "r")
    assert history(client, run.info.run_id, "train/loss") == {r: train_loss(r) for r in range(3)}
    assert any(p.startswith("models/global/") for p in artifacts(client, run.info.run_id))


def test_invalid_json_is_skipped_with_its_reason_and_taken_once_fixed(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("fixed")
    folder = write_run(tmp_path, c, "p", "e", "r", rounds=2, checkpoints=False)
    (folder / "global_loss_history.json").write_text("{not json")
    first = ingest(tmp_path, shared_server)
    assert first.count("new") == 1
    assert [n.where for o in first.outcomes for n in o.notes] == [
        f"{c}/p/e/r: outputs/global_loss_history.json"
    ]
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "r")
    assert "train/loss" not in run.data.metrics
    write_global(folder, rounds=2)

    second = ingest(tmp_path, shared_server)

    assert second.count("updated") == 1, second.summary()
    assert history(client, run.info.run_id, "train/loss") == {0: train_loss(0), 1: train_loss(1)}
    assert ingest(tmp_path, shared_server).count("unchanged") == 1


def test_untidy_tree_is_reported_and_the_rest_ingested(
    shared_server: Server, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    c = unique("untidy")
    write_run(outputs, c, "p", "e", "good run ü", rounds=1, checkpoints=False)
    (outputs / c / "p" / "e" / "empty").mkdir(parents=True)
    write_run(outputs, c, "p", "e", "tab\there", rounds=1, checkpoints=False)
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"secret")
    (outputs / c / "p" / "e" / "good run ü" / "local_model_spy.pt").symlink_to(secret)
    write_json(outputs / c / "stray.json", {})

    report = ingest(outputs, shared_server)

    assert (report.count("new"), report.count("skipped")) == (1, 2), report.summary()
    text = "\n".join(report.summary())
    assert "empty: run folder holds no known files" in text
    assert "must be printable" in text
    assert "link points outside the folder" in text
    assert "file outside a run folder" in text
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "good run ü")
    assert "spy" not in children(client, run)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNMLOPS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_cli_ingest_prints_a_summary_with_each_skip_and_its_reason(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("cli")
    write_run(tmp_path, c, "p", "e", "r", rounds=2, checkpoints=False)
    (tmp_path / c / "p" / "e" / "hollow").mkdir()

    result = run_cli("ingest", str(tmp_path), "--tracking-uri", shared_server.url)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "runs: 1 new, 0 updated, 0 unchanged, 1 skipped"
    assert f"  skipped run {c}/p/e/hollow: run folder holds no known files" in lines
    again = run_cli("ingest", str(tmp_path), "--tracking-uri", shared_server.url)
    assert again.stdout.splitlines() == [
        "runs: 0 new, 0 updated, 1 unchanged, 1 skipped; nothing changed since the last ingest"
    ]


def test_watch_does_not_take_a_file_still_being_written(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("settle")
    folder = write_run(tmp_path, c, "p", "e", "r", rounds=2, checkpoints=False)
    watcher = Watcher(tmp_path, tracking_uri=shared_server.url, interval=0.1, echo=lambda _: None)
    watcher.poll()  # first sight: nothing has been stable for two polls yet
    assert watcher.report.outcomes == []
    growing = folder / "local_model_worker_1.pt"
    with growing.open("ab") as handle:
        handle.write(b"more weights")
    watcher.poll()  # everything else settled; the growing model waits
    assert watcher.report.count("new") == 1
    client = MlflowClient(shared_server.url)
    run = parent(client, c, "p", "e", "r")
    worker_1 = children(client, run)["worker_1"].info.run_id
    assert not any(p.startswith("models/local/") for p in artifacts(client, worker_1))
    watcher.poll()  # now it has been stable for two polls
    assert any(p.startswith("models/local/") for p in artifacts(client, worker_1))
    assert run.data.tags.get(DIGEST_TAG) != parent(client, c, "p", "e", "r").data.tags[DIGEST_TAG]
    watcher.poll()
    assert watcher.report.count("new") == 1 and len(watcher.report.outcomes) == 1


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the run does not exist yet
            pass
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_cli_watch_ingests_runs_as_they_appear_and_exits_cleanly_on_ctrl_c(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("watch")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    process = subprocess.Popen(
        [
            *SYNMLOPS,
            "watch",
            str(outputs),
            "--tracking-uri",
            shared_server.url,
            "--interval",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = MlflowClient(shared_server.url)
        write_run(outputs, c, "p", "e", "r1", rounds=2, checkpoints=False)
        wait_for(lambda: DIGEST_TAG in parent(client, c, "p", "e", "r1").data.tags)
        folder = write_run(outputs, c, "p", "e", "r2", rounds=1, checkpoints=False)
        write_global(folder, rounds=3)
        wait_for(lambda: DIGEST_TAG in parent(client, c, "p", "e", "r2").data.tags)
        r2 = parent(client, c, "p", "e", "r2").info.run_id
        wait_for(lambda: len(history(client, r2, "train/loss")) == 3)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "runs: 2 new, 0 updated, 0 unchanged, 0 skipped" in stdout


def test_serve_watch_ingests_beside_the_server_counts_what_it_left_out_and_is_supervised(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    import requests

    outputs = tmp_path / "outputs"
    write_run(outputs, "served", "p", "e", "r", rounds=2, checkpoints=False)
    server = server_factory(extra=["--watch", str(outputs)])
    client = MlflowClient(server.url)
    wait_for(lambda: "train/loss" in parent(client, "served", "p", "e", "r").data.metrics)
    assert f"Watching {outputs}" in server.output()

    def health() -> requests.Response:
        return requests.get(f"{server.url}/health", timeout=60)

    wait_for(lambda: health().json()["watch"]["runs"] == {"new": 1})
    assert health().json()["watch"]["left_out"] == {} and health().json()["status"] == "ok"
    # A file it cannot read: left out, counted by reason in /health, the rest of its run kept.
    broken = write_run(outputs, "served", "p", "e", "r2", rounds=2, checkpoints=False)
    (broken / "local_loss_history_worker_1.json").write_text('{"cut": ')
    wait_for(lambda: health().json()["watch"]["left_out"] == {"file not ingested": 1})
    assert "train/loss" in parent(client, "served", "p", "e", "r2").data.metrics
    # The folder gone (an unmounted volume): the watch stops, /health is 503 and names it;
    # back, the watch is started again and goes on.
    away = outputs.rename(tmp_path / "away")
    wait_for(lambda: health().status_code == 503)
    body = health().json()
    assert body["reason"].startswith(f"the watch of {outputs} stopped (") and body["watch"]["down"]
    away.rename(outputs)
    wait_for(lambda: health().status_code == 200 and health().json()["watch"]["restarts"] >= 1)
    write_run(outputs, "served", "p", "e", "r3", rounds=2, checkpoints=False)
    wait_for(lambda: "train/loss" in parent(client, "served", "p", "e", "r3").data.metrics)
    # The pass counts a run once it has ended; its points are readable before that.
    wait_for(lambda: health().json()["watch"]["runs"] == {"new": 3})
    watched = health().json()["watch"]
    assert watched["down"] is None, watched
    assert "watch stopped: " in server.output()
