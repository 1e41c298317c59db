"""Write MLflow file-store folders byte for byte as mlflow 1.7.2 lays them out, for fast
in-process tests of the mirror (the real 1.7.2 client drives the end-to-end tests)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml


def write_experiment(root: Path, experiment_id: str, name: str, mount: str = "/mlflow") -> Path:
    folder = root / experiment_id
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "artifact_location": f"{mount}/{experiment_id}",
        "experiment_id": experiment_id,
        "lifecycle_stage": "active",
        "name": name,
    }
    (folder / "meta.yaml").write_text(yaml.safe_dump(meta))
    return folder


def write_run(
    root: Path,
    experiment_id: str,
    run_name: str,
    *,
    params: Mapping[str, object] = (),  # type: ignore[assignment]
    metrics: Mapping[str, Sequence[tuple[int, float, int]]] = (),  # type: ignore[assignment]
    artifacts: Mapping[str, bytes] = (),  # type: ignore[assignment]
    status: int = 3,
    run_uuid: str | None = None,
    mount: str = "/mlflow",
) -> tuple[str, Path]:
    run_uuid = run_uuid or uuid.uuid4().hex
    folder = root / experiment_id / run_uuid
    for sub in ("metrics", "params", "tags", "artifacts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    meta = {
        "artifact_uri": f"{mount}/{experiment_id}/{run_uuid}/artifacts",
        "end_time": 1_600_000_100_000 if status != 1 else None,
        "entry_point_name": "",
        "experiment_id": experiment_id,
        "lifecycle_stage": "active",
        "name": "",
        "run_id": run_uuid,
        "run_uuid": run_uuid,
        "source_name": "",
        "source_type": 4,
        "source_version": "",
        "start_time": 1_600_000_000_000,
        "status": status,
        "tags": [],
        "user_id": "root",
    }
    (folder / "meta.yaml").write_text(yaml.safe_dump(meta))
    (folder / "tags" / "mlflow.runName").write_text(run_name)
    (folder / "tags" / "mlflow.user").write_text("root")
    for key, value in dict(params).items():
        (folder / "params" / key).write_text(str(value))
    for key, points in dict(metrics).items():
        append_points(folder, key, points)
    for name, data in dict(artifacts).items():
        (folder / "artifacts" / name).write_bytes(data)
    return run_uuid, folder


def append_points(folder: Path, key: str, points: Sequence[tuple[int, float, int]]) -> None:
    path = folder / "metrics" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for timestamp, value, step in points:
            handle.write(f"{timestamp} {value} {step}\n")
