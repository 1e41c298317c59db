"""The Cluster tier's stores: PostgreSQL and an S3-compatible bucket (moto in server mode),
set the way MLflow users set them (MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import requests
from cluster_support import S3Server
from conftest import SYNMLOPS, Server, free_port
from mlflow import MlflowClient

from synergos_mlops import FederatedTracker, TrackerConfig

BUCKET = "synergos-artifacts"


def test_tracker_files_go_through_the_proxy_into_the_bucket_and_back_out(
    tmp_path: Path, server_factory: Callable[..., Server], postgres_uri: str, s3: S3Server
) -> None:
    s3.create_bucket(BUCKET)
    server = server_factory(
        tmp_path / "store",
        workers=2,
        extra=["--backend-store-uri", postgres_uri,
               "--artifacts-destination", f"s3://{BUCKET}/federated"],
        env=s3.env,
    )  # fmt: skip
    health = requests.get(f"{server.url}/health", timeout=30).json()
    assert (health["status"], health["backend"], health["artifacts"]) == (
        "ok", "postgresql", "s3",
    )  # fmt: skip

    notes = tmp_path / "notes.txt"
    notes.write_text("participant notes")
    tracker = FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool"))
    with tracker, tracker.run("hospitals", "sepsis", "mlp", "r1",
                              participants=["w1", "w2"]) as run:  # fmt: skip
        run.log_metrics({"train/loss": 0.5}, step=0)
        run.log_model(b"global weights")
        run.log_model(b"checkpoint", round=3, epoch=1)
        run.log_model(b"local weights", participant="w1")
        run.log_artifact(notes, participant="w2", artifact_path="extra")
    assert tracker.retries == 0

    # In the bucket, under the prefix, at MLflow's own layout.
    keys = s3.keys(BUCKET)
    parent, w1, w2 = run.run_id, run.participant_run_id("w1"), run.participant_run_id("w2")
    expected = {
        f"federated/{run.experiment_id}/{parent}/artifacts/models/global/model.pt",
        f"federated/{run.experiment_id}/{parent}/artifacts/checkpoints/round_3/epoch_1/model.pt",
        f"federated/{run.experiment_id}/{w1}/artifacts/models/local/model.pt",
        f"federated/{run.experiment_id}/{w2}/artifacts/extra/notes.txt",
    }
    assert set(keys) == expected
    global_key = f"federated/{run.experiment_id}/{parent}/artifacts/models/global/model.pt"
    assert s3.read(BUCKET, global_key) == b"global weights"

    # MLflow's stock client downloads through the server.
    client = MlflowClient(server.url)
    local = client.download_artifacts(w1, "models/local/model.pt", str(tmp_path / "down"))
    assert Path(local).read_bytes() == b"local weights"
    assert [f.path for f in client.list_artifacts(parent, "models/global")] == [
        "models/global/model.pt"
    ]

    # The Synergos bundle reads every file back from the bucket.
    bundle = requests.get(
        f"{server.url}/api/synergos/v1/runs/hospitals/sepsis/mlp/r1/bundle.zip", timeout=120
    )
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    for name in ("hyperparameters.json", "metrics.csv", "statistics.csv", "model_versions.json"):
        assert files.pop(name), name  # the run's data, written from the database
    assert files == {
        "global/models/global/model.pt": b"global weights",
        "global/checkpoints/round_3/epoch_1/model.pt": b"checkpoint",
        "participants/w1/models/local/model.pt": b"local weights",
        "participants/w2/extra/notes.txt": b"participant notes",
    }

    # A bucket that goes away turns /health to 503, with the reason.
    storage = s3.client()
    for key in keys:
        storage.delete_object(Bucket=BUCKET, Key=key)
    storage.delete_bucket(Bucket=BUCKET)
    gone = requests.get(f"{server.url}/health", timeout=60)
    assert gone.status_code == 503
    assert gone.json()["reason"] == (
        f"bucket '{BUCKET}' at {s3.endpoint} does not exist (create it first)"
    )


def serve_once(tmp_path: Path, destination: str, env: dict[str, str]) -> str:
    import os

    result = subprocess.run(
        [*SYNMLOPS, "serve", "--store", str(tmp_path / "store"), "--port", str(free_port()),
         "--artifacts-destination", destination],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


def test_serve_refuses_a_missing_bucket_and_an_unreachable_endpoint_in_one_line(
    tmp_path: Path, s3: S3Server
) -> None:
    missing = serve_once(tmp_path, "s3://no-such-bucket/x", s3.env)
    assert missing == (
        f"Error: bucket 'no-such-bucket' at {s3.endpoint} does not exist (create it first)"
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = serve_once(
        tmp_path, "s3://some-bucket", {**s3.env, "MLFLOW_S3_ENDPOINT_URL": nowhere}
    )
    assert unreachable.startswith(f"Error: cannot reach bucket 'some-bucket' at {nowhere}: ")
    assert "secret" not in unreachable
