"""An unchanged original Synergos TTP (mlflow 1.7.2, Python 3.7, tests/legacy_ttp/ttp.py)
writes its file store while `synmlops serve` serves the same folder: everything it writes
shows in the Synergos API point for point, nothing is stored twice across a restart, and the
old client still reads its store without a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Server, start_server, wait_for
from legacy_support import legacy_ttp, ttp  # noqa: F401 - legacy_ttp is a fixture

from synergos_mlops.federation import legacy_metric

pytestmark = pytest.mark.usefixtures("legacy_ttp")

PARTICIPANTS = "p1,p2,p3"
HYPERPARAMETERS = '{"algorithm": "FedProx", "rounds": 3, "mu": 0.1}'
API = "/api/synergos/v1"


def _get(server: Server, path: str, **params: str) -> Any:
    response = requests.get(f"{server.url}{API}{path}", params=params, timeout=60)
    return response.json() if response.status_code == 200 else None


def _file_points(store: Path, experiment_id: str, run_uuid: str) -> dict[str, list[list[float]]]:
    """The TTP's own metric files: {key: [[timestamp, value, step], ...]} in file order."""
    folder = store / experiment_id / run_uuid / "metrics"
    return {
        path.name: [[float(x) for x in line.split()] for line in path.read_text().splitlines()]
        for path in folder.iterdir()
    }


def _expected(points: dict[str, list[list[float]]]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """What the API must show for the TTP's files: {(owner, key): {step: value}} with the last
    value per step, and {key: [(step, value), ...]} of the unattributed statistics."""
    series: dict[Any, Any] = {}
    unattributed: dict[str, Any] = {}
    for key, lines in points.items():
        target = legacy_metric(key)
        if target.unattributed:
            unattributed[key] = [(int(step), value) for _, value, step in lines]
            continue
        by_step = series.setdefault((target.participant, target.key), {})
        for _, value, step in sorted(lines):
            by_step[int(step)] = value
    return series, unattributed


def _shown(server: Server, run: str, path: str) -> tuple[dict[Any, Any], dict[str, Any]]:
    detail = _get(server, f"{path}/{run}")
    keys = ",".join(detail["metric_keys"])
    body = _get(server, f"{path}/{run}/metrics", keys=keys)
    series: dict[Any, Any] = {}
    for key, entry in body["series"].items():
        lines = [(None, entry["global"])] if entry["global"] else []
        lines += list(entry["participants"].items())
        for owner, line in lines:
            series[(owner, key)] = dict(zip(line["steps"], line["values"], strict=True))
    statistics = (detail["unattributed"] or {}).get("statistics", [])
    unattributed = {s["key"]: [(p["step"], p["value"]) for p in s["points"]] for s in statistics}
    return series, unattributed


def _matches(server: Server, store: Path, logged: dict[str, Any], path: str) -> bool:
    expected = _expected(_file_points(store, logged["experiment_id"], logged["run_uuid"]))
    try:
        return _shown(server, logged["run_name"], path) == expected
    except (TypeError, KeyError):
        return False


def test_an_unchanged_ttp_writing_beside_the_server_is_served_live_point_for_point(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    outputs = tmp_path / "outputs"
    first = ttp(
        store, "run", "--collaboration", "hospitals", "--project", "sepsis",
        "--experiment", "mlp", "--run", "run-1", "--participants", PARTICIPANTS,
        "--hyperparameters", HYPERPARAMETERS, "--artifacts-dir", str(outputs / "run-1"),
    )  # fmt: skip
    server = start_server(store, workers=2)
    try:
        path = "/runs/hospitals/sepsis/mlp"
        assert wait_for(lambda: _matches(server, store, first, path))
        detail = _get(server, f"{path}/run-1")
        assert detail["source"] == "file-store"
        assert detail["status"] == "FINISHED"
        assert detail["hyperparameters"] == {"algorithm": "FedProx", "mu": "0.1", "rounds": "3"}
        assert [p["id"] for p in detail["participants"]] == ["p1", "p2", "p3"]
        assert [a["path"] for a in detail["artifacts"]["participants"]["p2"]] == [
            "local_loss_history_p2.json",
            "local_model_p2.pt",
        ]

        # A second run in the same experiment, still running, then points appended to it.
        second = ttp(
            store, "run", "--collaboration", "hospitals", "--project", "sepsis",
            "--experiment", "mlp", "--run", "run-2", "--participants", PARTICIPANTS,
            "--keep-running",
        )  # fmt: skip
        assert wait_for(lambda: _matches(server, store, second, path))
        assert _get(server, f"{path}/run-2")["status"] == "RUNNING"
        for step, value in ((3, 0.2), (4, 0.15)):
            ttp(store, "append", "--run-uuid", second["run_uuid"], "--key", "global_train_loss",
                "--step", str(step), "--value", str(value))  # fmt: skip
        assert wait_for(lambda: _matches(server, store, second, path))

        # A new experiment created while served.
        third = ttp(
            store, "run", "--collaboration", "hospitals", "--project", "stroke",
            "--experiment", "cnn", "--run", "run-1", "--participants", "p1,p2",
        )  # fmt: skip
        assert wait_for(lambda: _matches(server, store, third, "/runs/hospitals/stroke/cnn"))
    finally:
        server.stop()

    # Restarted mid-way: the TTP finishes its run while the server is down.
    ttp(store, "finish", "--run-uuid", second["run_uuid"])
    server = start_server(store, workers=1)
    try:
        assert wait_for(lambda: _get(server, f"{path}/run-2")["status"] == "FINISHED")
        for logged, where in ((first, path), (second, path), (third, "/runs/hospitals/stroke/cnn")):
            assert _matches(server, store, logged, where)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(server.url)
        history = client.get_metric_history(second["run_uuid"], "train/loss")
        assert [m.step for m in history] == [0, 1, 2, 3, 4]  # once each after the restart
        tree = _get(server, "/collaborations")["collaborations"]
        projects = {p["id"]: [e["id"] for e in p["experiments"]] for p in tree[0]["projects"]}
        assert projects == {"sepsis": ["mlp"], "stroke": ["cnn"]}
    finally:
        server.stop()

    # The old client reads its store as before: every experiment and run, not one warning.
    listed = ttp(store, "list")
    assert listed["warnings"] == []
    names = sorted(e["name"] for e in listed["experiments"])
    assert names == ["Default", "hospitals_>_sepsis_>_mlp", "hospitals_>_stroke_>_cnn"]
    assert len(listed["runs"]) == 3
