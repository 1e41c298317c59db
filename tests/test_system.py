"""Hardware statistics per participant: `synmlops monitor` processes beside a federated run,
samples attached by time to the right participant runs only, the /system route, the bundle's
system.csv, a server away and back, and participant-scoped accounts."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from unittest import mock

import requests
from auth_support import bind, create_accounts
from conftest import SYNMLOPS, Server, start_server
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.samples import encode_samples, target

API = "/api/synergos/v1"
CPU = "system/cpu_utilization_percentage"


def start_monitor(
    url: str, participant: str, spool: Path, *extra: str, collaboration: str = "hospitals"
) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNMLOPS_SPOOL": str(spool)}
    return subprocess.Popen(
        [*SYNMLOPS, "monitor", "--collaboration", collaboration, "--participant", participant,
         "--tracking-uri", url, "--interval", "0.5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def stop_monitor(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def sample_body(participant: str, stamps: list[int], collaboration: str = "hospitals") -> bytes:
    name = target(collaboration, participant)
    batch = MetricBatch()
    for stamp in stamps:
        batch.append(name, CPU, 0, 42.0, stamp)
        batch.append(name, "system/system_memory_usage_megabytes", 0, 1000.0 + stamp % 7, stamp)
    return encode_samples(batch, {name: {"cpu_count": "8", "hostname": "node-x"}})


def post_samples(url: str, body: bytes, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{url}{API}/system/samples", data=body, auth=auth, timeout=60,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip


def test_monitor_processes_attach_samples_to_their_own_participants_runs_with_facts_as_tags(
    shared_server: Server, tmp_path: Path
) -> None:
    server = shared_server  # two workers; a collaboration of this test's own
    collaboration = f"hospitals-{uuid.uuid4().hex[:8]}"
    monitors = {
        p: start_monitor(server.url, p, tmp_path / f"spool-{p}", collaboration=collaboration)
        for p in ("w1", "w2")
    }
    config = fast_config(tmp_path / "tracker")
    with (
        FederatedTracker(server.url, config) as tracker,
        tracker.run(collaboration=collaboration, project="p", experiment="e", run="r1",
                    participants=["w1", "w2", "w3"]) as run,
    ):  # fmt: skip
        for r in range(4):  # rounds of ~1 s, w2 the straggler
            time.sleep(0.6)
            run.log_metrics({"train/loss": 1.0 / (r + 1)}, step=r, participant="w1")
            time.sleep(0.5)
            run.log_metrics({"train/loss": 1.1 / (r + 1)}, step=r, participant="w2")
            run.log_metrics({"train/loss": 1.0 / (r + 1)}, step=r, participant="w3")
            run.log_metrics({"train/loss": 1.05 / (r + 1)}, step=r)
        run.flush()
        ids = {p: run.participant_run_id(p) for p in ("w1", "w2", "w3")}
        parent_id = run.run_id
    summaries = {p: stop_monitor(m) for p, m in monitors.items()}
    assert "samples of w1" in summaries["w1"] and "attached to runs" in summaries["w1"]

    client = MlflowClient(server.url)
    for p in ("w1", "w2"):
        history = client.get_metric_history(ids[p], CPU)
        assert len(history) >= 3, p
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)) and min(steps) >= 0
        info = client.get_run(ids[p])
        start = info.info.start_time
        assert all(m.step == (m.timestamp - start) // 1000 for m in history)
        # A sample that reaches the server before the run's end does is kept with that run:
        # at most one sampling interval (0.5 s) plus the end request's trip after the end.
        assert all(start <= m.timestamp <= info.info.end_time + 1500 for m in history)
        assert info.data.tags["synergos.system.cpu_count"] == str(os.cpu_count())
        assert "synergos.system.hostname" in info.data.tags
        assert "system/process_memory_rss_megabytes" in info.data.metrics
    assert client.get_metric_history(ids["w3"], CPU) == []
    assert not any(k.startswith("system/") for k in client.get_run(parent_id).data.metrics)
    assert "synergos.system.cpu_count" not in client.get_run(ids["w3"]).data.tags

    view = requests.get(f"{server.url}{API}/runs/{collaboration}/p/e/r1/system", timeout=60).json()
    assert view["round_key"] == "train/loss" and CPU in view["keys"]
    assert [r["round"] for r in view["rounds"]] == [0, 1, 2, 3]
    assert all(r["start"] < r["end"] for r in view["rounds"])
    w1 = view["participants"]["w1"]
    assert w1["facts"]["cpu_count"] == str(os.cpu_count())
    line = w1["series"][CPU]
    assert len(line["steps"]) == len(line["seconds"]) == len(line["values"]) >= 3
    assert view["participants"]["w3"]["series"] == {}
    summary = view["summary"]
    assert summary["participants"] == ["w1", "w2", "w3"] and summary["rounds"] == [0, 1, 2, 3]
    durations = summary["duration_seconds"]
    assert all(d is not None for row in durations for d in row)
    # w2 logs each round 0.5 s after w1: the straggler shows in the heatmap's durations.
    assert all(d2 > d1 for d1, d2 in zip(durations[0][1:], durations[1][1:], strict=True))
    assert any(v is not None for v in summary["cpu_mean_percentage"][0])
    assert all(v is None for v in summary["cpu_mean_percentage"][2])  # w3 was not monitored
    assert len(summary["memory_peak_megabytes"]) == 3

    document = requests.get(f"{server.url}{API}/openapi.json", timeout=60).json()
    assert (
        f"{API}/runs/{{collaboration}}/{{project}}/{{experiment}}/{{run}}/system"
        in (document["paths"])
    )
    bundle = requests.get(f"{server.url}{API}/runs/{collaboration}/p/e/r1/bundle.zip", timeout=60)
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:
        rows = zf.read("system.csv").decode().splitlines()
    assert rows[0] == "participant,key,step,value,timestamp"
    assert {row.split(",")[0] for row in rows[1:]} == {"w1", "w2"}


def test_samples_taken_while_the_server_is_away_arrive_once_when_it_is_back(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    server = start_server(store)
    try:
        config = fast_config(tmp_path / "tracker", flush_timeout=60)
        tracker = FederatedTracker(server.url, config)
        run = tracker.run(collaboration="hospitals", project="p", experiment="e", run="r",
                          participants=["w1"])  # fmt: skip
        monitor = start_monitor(server.url, "w1", tmp_path / "spool")
        time.sleep(2.5)
        server.stop()
        away_from = int(time.time() * 1000)
        time.sleep(3)
        away_until = int(time.time() * 1000)
        server = start_server(store, port=server.port)
        time.sleep(2.5)
        out = stop_monitor(monitor)
        assert "waiting in the spool" not in out
        run.end()
        tracker.close()
        history = MlflowClient(server.url).get_metric_history(run.participant_run_id("w1"), CPU)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps))
        assert any(away_from <= m.timestamp <= away_until for m in history)
        assert len(history) >= 6
    finally:
        server.stop()


def test_a_sample_within_no_run_is_counted_and_not_stored(
    shared_server: Server, tmp_path: Path
) -> None:
    server = shared_server
    collaboration = f"hospitals-{uuid.uuid4().hex[:8]}"
    with (
        FederatedTracker(server.url, fast_config(tmp_path)) as tracker,
        tracker.run(collaboration=collaboration, project="p", experiment="e", run="r",
                    participants=["w1"]) as run,
    ):  # fmt: skip
        run_id = run.participant_run_id("w1")
    ended = MlflowClient(server.url).get_run(run_id).info.end_time
    after = [ended + 5000, ended + 6000]
    answer = post_samples(server.url, sample_body("w1", after, collaboration))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"samples": 2, "attached": 0, "unmatched": 2, "points": 0, "runs": 0}
    nobody = post_samples(server.url, sample_body("nobody", [ended], collaboration))
    assert nobody.json()["unmatched"] == 1
    assert MlflowClient(server.url).get_metric_history(run_id, CPU) == []
    bad = post_samples(server.url, b'{"format": "synergos.system/1", "runs": 3}')
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_VALUE"


def test_samples_attach_by_time_to_every_run_of_the_participant_they_fall_in(
    sql_store,
) -> None:
    from mlflow.entities import RunStatus

    from synergos_mlops.federation import ExperimentIds
    from synergos_mlops.storage.runs import resolve_run
    from synergos_mlops.storage.samples import decode_samples
    from synergos_mlops.storage.system import attach_samples

    store = sql_store
    ids = ExperimentIds("hospitals", "p", "e")
    first = resolve_run(store, ids, "r1", ["w1", "w2"])
    second = resolve_run(store, ids, "r2", ["w1"])
    elsewhere = resolve_run(store, ExperimentIds("other", "p", "e"), "r1", ["w1"])
    w1_first, w1_second = first.participants["w1"], second.participants["w1"]
    start_1 = store.get_run(w1_first).info.start_time
    start_2 = store.get_run(w1_second).info.start_time
    store.update_run_info(w1_first, RunStatus.FINISHED, start_1 + 10_000, None)
    stamps = [start_1 + 1500, start_1 + 9000, start_1 + 20_000, start_2 - 60_000_000]
    body = sample_body("w1", stamps)
    result = attach_samples(store.engine, decode_samples(body))
    # 1.5 s and 9 s fall in both runs (the second is still open); 20 s only in the second.
    assert (result.samples, result.unmatched, result.runs) == (4, 1, 2)
    assert [(m.step, m.timestamp) for m in store.get_metric_history(w1_first, CPU)] == [
        (1, start_1 + 1500), (9, start_1 + 9000),
    ]  # fmt: skip
    in_second = store.get_metric_history(w1_second, CPU)
    assert [m.step for m in in_second] == [(s - start_2) // 1000 for s in stamps[:3]]
    assert store.get_metric_history(first.participants["w2"], CPU) == []
    assert store.get_metric_history(elsewhere.participants["w1"], CPU) == []
    assert store.get_run(w1_first).data.tags["synergos.system.hostname"] == "node-x"
    again = attach_samples(store.engine, decode_samples(body))  # a retried batch
    assert again.points == result.points
    assert len(store.get_metric_history(w1_second, CPU)) == 3


def test_a_participant_account_sends_and_sees_only_its_own_participants_samples(
    tmp_path: Path,
) -> None:
    admin = ("admin", "admin-password-for-tests")
    alice = ("alice", "alice-password-123")
    store = tmp_path / "store"
    server = start_server(store, extra=["--auth"], timeout=300,
                          env={"MLFLOW_AUTH_ADMIN_PASSWORD": admin[1]})  # fmt: skip
    credentials = {"MLFLOW_TRACKING_USERNAME": admin[0], "MLFLOW_TRACKING_PASSWORD": admin[1]}
    try:
        with (
            mock.patch.dict(os.environ, credentials),
            FederatedTracker(server.url, fast_config(tmp_path)) as tracker,
            tracker.run(collaboration="hospitals", project="p", experiment="e", run="r",
                        participants=["w1", "w2"]),
        ):  # fmt: skip
            create_accounts(server.url, alice, admin=admin)
            bind(store, alice[0], "hospitals", "w1")
            now = int(time.time() * 1000)
            assert post_samples(server.url, sample_body("w1", [now])).status_code == 401
            own = post_samples(server.url, sample_body("w1", [now]), auth=alice)
            assert own.status_code == 200 and own.json()["attached"] == 1, own.text
            other = post_samples(server.url, sample_body("w2", [now]), auth=alice)
            assert other.status_code == 403 and "w2" in other.json()["error"]["message"]
            by_admin = post_samples(server.url, sample_body("w2", [now]), auth=admin)
            assert by_admin.json()["runs"] == 1
            path = f"{server.url}{API}/runs/hospitals/p/e/r/system"
            seen = requests.get(path, auth=alice, timeout=60).json()["participants"]
            assert set(seen) == {"w1"}
            everyone = requests.get(path, auth=admin, timeout=60).json()["participants"]
            assert set(everyone) == {"w1", "w2"}
    finally:
        server.stop()


def test_the_demos_participants_have_hardware_statistics(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "SYNMLOPS_SPOOL": str(tmp_path / "spool")}
    subprocess.run(
        [*SYNMLOPS, "demo", "--tracking-uri", str(store), "--rounds", "2", "--epochs", "1",
         "--run", "r", "--round-seconds", "1.5"],
        check=True, capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name.startswith("demo/")]
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`synergos.role` = 'participant'"
    )
    assert len(runs) == 3
    for found in runs:
        assert client.get_metric_history(found.info.run_id, CPU), found.info.run_name
        assert "synergos.system.cpu_count" in found.data.tags


def test_monitor_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SYNMLOPS_SPOOL": str(tmp_path / "spool")}
    for args, message in (
        (["--collaboration", "a/b", "--participant", "w1"], "must not contain '/'"),
        (["--collaboration", "c", "--participant", "w1", "--pid", "999999999"], "no process"),
    ):
        result = subprocess.run(
            [*SYNMLOPS, "monitor", "--tracking-uri", str(tmp_path / "store"), *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr
