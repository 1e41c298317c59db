"""Data catalogue: participants' data summaries kept as MLflow datasets of their runs, read
back by the catalogue routes, drift across runs, and the worker's catalogue.json ingested,
on a real `synmlops serve` (SQLite, and PostgreSQL for the storage path)."""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import SYNMLOPS, Server
from ingest_trees import (
    WORKER_TABULAR_HEADERS,
    WORKER_TABULAR_SCHEMA,
    set_mtime,
    worker_catalogue_image,
    worker_catalogue_tabular,
    worker_catalogue_text,
    worker_tabular_summary,
    write_worker_catalogue,
)
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker, InvalidValueError
from synergos_mlops.catalogue import columns_of, dataset_entry, parse_worker_catalogue, rows_of

API = "/api/synergos/v1"

#: One split of a tabular participant in the shape this package guessed before the worker's
#: was confirmed (fields nested under the kind's name), which the tracker still takes; the
#: worker's own shape is in ingest_trees (worker_catalogue_tabular) and tested below.
TABULAR: dict[str, Any] = {
    "src_count": 120,
    "_type": "tabular",
    "tabular": {
        "cat_variables": {
            "sex": {"datatype": "category", "labels": ["F", "M"], "count": 120, "unique": 2,
                    "top": "M", "freq": 64},
            "cp": {"datatype": "category", "labels": [1, 2, 3, 4], "count": 120, "unique": 4,
                   "top": 4, "freq": 57},
        },
        "num_variables": {
            "age": {"datatype": "int64", "count": 120, "mean": 54.2, "std": 9.1, "min": 29,
                    "25%": 47, "50%": 55, "75%": 61, "max": 77},
            "chol": {"datatype": "float64", "count": 120, "mean": 246.7, "std": 51.8,
                     "min": 126.0, "25%": 211.0, "50%": 241.0, "75%": 275.0, "max": 564.0},
        },
    },
    "image": {},
    "text": {},
}  # fmt: skip
SCHEMA = {"age": "int64", "sex": "category", "cp": "category", "chol": "float64"}
HEADERS = ["age", "sex", "cp", "chol"]
IMAGE = {"src_count": 300, "_type": "image", "tabular": {}, "text": {},
         "image": {"pixel_height": 28, "pixel_width": 28, "color": "L"}}  # fmt: skip
TEXT = {"src_count": 1, "_type": "text", "tabular": {}, "image": {},
        "text": {"word_count": 18235, "sparsity": 0.97, "representation": "tfidf"}}  # fmt: skip


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def worker_catalogue(metadata: dict[str, Any], schema: dict[str, str] | None = None,
                     headers: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A catalogue.json in the older guessed shape (headers as a list per split), still read."""
    return {
        "headers": {split: headers or [] for split in ("train", "evaluate")},
        "schemas": {split: schema or {} for split in ("train", "evaluate")},
        "metadata": {"train": metadata, "evaluate": copy.deepcopy(metadata)},
    }


def get(server: Server, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{server.url}{API}{path}", timeout=60, **kwargs)


def run_path(*ids: str) -> str:
    return "/".join(quote(i, safe="") for i in ids)


def log_three_runs(url: str, tmp_path: Path, c: str) -> dict[str, str]:
    """Three runs of project "heart": hospital-a's train data gains rows (r2) then a column
    (r3); hospital-b's data never changes. Returns the digests by (participant, run)."""
    changed_rows = copy.deepcopy(TABULAR)
    changed_rows["tabular"]["num_variables"]["age"].update(count=150, mean=51.0)
    changed_rows["src_count"] = 150
    changed_column = copy.deepcopy(changed_rows)
    changed_column["tabular"]["num_variables"]["thal"] = {
        "datatype": "float64", "count": 150, "mean": 4.7, "std": 1.9, "min": 3.0,
        "25%": 3.0, "50%": 3.0, "75%": 7.0, "max": 7.0,
    }  # fmt: skip
    a_data = {"r1": (TABULAR, SCHEMA), "r2": (changed_rows, SCHEMA),
              "r3": (changed_column, {**SCHEMA, "thal": "float64"})}  # fmt: skip
    digests: dict[str, str] = {}
    with FederatedTracker(url, fast_config(tmp_path)) as tracker:
        for run_id, (metadata, schema) in a_data.items():
            with tracker.run(
                c, "heart", "fedavg", run_id, participants=["hospital-a", "hospital-b"]
            ) as run:
                digests[f"a/{run_id}"] = run.log_dataset(
                    "hospital-a", "train", metadata, schema=schema, headers=list(schema)
                )
                digests[f"b/{run_id}"] = run.log_dataset(
                    "hospital-b", "train", TABULAR, schema=SCHEMA, headers=HEADERS
                )
                run.log_dataset("hospital-b", "evaluate", IMAGE)
                run.log_metrics({"train/loss": 0.5}, step=0)
    return digests


def check_catalogue_and_drift(server: Server, tmp_path: Path) -> None:
    c = unique("cardio")
    digests = log_three_runs(server.url, tmp_path, c)
    assert digests["a/r1"] != digests["a/r2"] != digests["a/r3"]
    assert digests["b/r1"] == digests["b/r2"] == digests["b/r3"]

    # MLflow's own view: dataset inputs of the participant's run, the split as context.
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(f"{c}/heart/fedavg")
    assert experiment is not None
    child = client.search_runs(
        [experiment.experiment_id],
        "tags.`synergos.participant` = 'hospital-a' and tags.`synergos.run` = 'r1'",
    )[0]
    inputs = child.inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.source_type) for i in inputs] == [
        ("hospital-a/train", "synergos-participant")
    ]
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": "train"}
    assert inputs[0].dataset.digest == digests["a/r1"]
    assert json.loads(inputs[0].dataset.source) == {
        "collaboration": c, "project": "heart", "participant": "hospital-a"
    }  # fmt: skip
    colspec = json.loads(inputs[0].dataset.schema)["mlflow_colspec"]
    assert {"name": "age", "type": "long"} in colspec

    body = get(server, "/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    participants = {p["id"]: p for p in collab["participants"]}
    a_train = next(s for s in participants["hospital-a"]["splits"] if s["split"] == "train")
    assert [d["digest"] for d in a_train["datasets"]] == [
        digests["a/r1"], digests["a/r2"], digests["a/r3"]
    ]  # fmt: skip
    first = a_train["datasets"][0]
    assert first["kind"] == "tabular" and first["rows"] == 120
    assert {"name": "chol", "type": "float64"} in first["columns"]
    b_train = next(s for s in participants["hospital-b"]["splits"] if s["split"] == "train")
    (b_dataset,) = b_train["datasets"]
    assert b_dataset["runs"] == 3
    assert (b_dataset["first_run"]["run"], b_dataset["last_run"]["run"]) == ("r1", "r3")
    b_eval = next(s for s in participants["hospital-b"]["splits"] if s["split"] == "evaluate")
    assert b_eval["datasets"][0]["kind"] == "image"

    profile = requests.get(server.url + first["profile"], timeout=60).json()
    assert profile["profile"]["metadata"]["tabular"]["num_variables"]["age"]["mean"] == 54.2
    assert [r["run"] for r in profile["runs"]] == ["r1"]
    missing = get(server, f"/catalogue/{quote(c)}/hospital-a/0000")
    assert missing.status_code == 404 and "0000" in missing.json()["error"]["message"]

    # Drift: r2 differs from r1 (rows) and r3 (a column), flagged on every run involved.
    def drift(run_id: str) -> list[dict[str, Any]]:
        answer = get(server, f"/runs/{run_path(c, 'heart', 'fedavg', run_id)}/datasets")
        assert answer.status_code == 200, answer.text
        return answer.json()["drift"]

    (r1,) = drift("r1")
    assert (r1["participant"], r1["against"], r1["run"]["run"]) == ("hospital-a", "next", "r2")
    assert r1["schema_changed"] is False and r1["profile_changed"] is True
    assert r1["columns"]["profile_changed"] == ["age"] and r1["columns"]["added"] == []
    r2 = {d["against"]: d for d in drift("r2")}
    assert set(r2) == {"previous", "next"}
    assert r2["next"]["columns"]["added"] == ["thal"] and r2["next"]["schema_changed"] is True
    (r3,) = drift("r3")
    assert (r3["against"], r3["run"]["run"], r3["digest_after"]) == (
        "previous", "r2", digests["a/r3"]
    )  # fmt: skip
    datasets = get(server, f"/runs/{run_path(c, 'heart', 'fedavg', 'r3')}/datasets").json()
    assert {(d["participant"], d["split"]) for d in datasets["datasets"]} == {
        ("hospital-a", "train"), ("hospital-b", "train"), ("hospital-b", "evaluate")
    }  # fmt: skip


def test_tracker_catalogues_participants_data_and_drift_is_flagged_across_three_runs(
    shared_server: Server, tmp_path: Path
) -> None:
    check_catalogue_and_drift(shared_server, tmp_path)


def test_catalogue_and_drift_read_the_same_from_postgresql(
    server_factory: Any, postgres_uri: str, tmp_path: Path
) -> None:
    server = server_factory(extra=["--backend-store-uri", postgres_uri])
    check_catalogue_and_drift(server, tmp_path)


def test_log_dataset_refuses_an_unknown_split_or_metadata_that_is_not_an_object(
    shared_server: Server, tmp_path: Path
) -> None:
    with (
        FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker,
        tracker.run(unique("c"), "p", "e", "r") as run,
    ):
        with pytest.raises(InvalidValueError, match="split 'test' must be one of"):
            run.log_dataset("w1", "test", TABULAR)
        with pytest.raises(InvalidValueError, match="must be an object"):
            run.log_dataset("w1", "train", [1, 2])  # type: ignore[arg-type]


def test_a_store_folder_keeps_datasets_the_server_then_serves(
    server_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    c = unique("folder")
    with (
        FederatedTracker(store, fast_config(tmp_path)) as tracker,
        tracker.run(c, "p", "e", "r", participants=["w1"]) as run,
    ):
        digest = run.log_dataset("w1", "predict", TEXT)
    server = server_factory(store)
    answer = get(server, f"/catalogue/{quote(c)}/w1/{digest}").json()
    assert answer["profile"]["kind"] == "text"
    assert answer["profile"]["metadata"]["text"]["representation"] == "tfidf"


# --- ingest ----------------------------------------------------------------------------------


def write_outputs(tmp_path: Path, c: str) -> tuple[Path, Path]:
    """An orchestrator's outputs (two runs of project p) and a shared workers' folder whose
    catalogue.json files are tabular, image, text, an older one and a malformed one."""
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    for run_id in ("r1", "r2"):
        folder = outputs / c / "p" / "e" / run_id
        folder.mkdir(parents=True)
        (folder / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    older = copy.deepcopy(TABULAR)
    del older["_type"], older["src_count"]
    catalogues = {
        "tabular-w": worker_catalogue(TABULAR, SCHEMA, HEADERS),
        "image-w": worker_catalogue(IMAGE),
        "text-w": worker_catalogue(TEXT),
        "older-w": {"metadata": {"train": older}},  # no headers, schemas, _type, src_count
        "broken-w": {"metadata": "not an object"},
    }
    for participant, catalogue in catalogues.items():
        write_worker_catalogue(workers, participant, [c, "p"], catalogue)
    half = workers / "half-w" / c / "p" / "preprocessing"
    half.mkdir(parents=True)
    (half / "catalogue.json").write_text('{"metadata": {"train": ')
    set_mtime(half / "catalogue.json", time.time() - 3600)
    return outputs, workers


def ingest(server: Server, outputs: Path, workers: Path) -> subprocess.CompletedProcess[str]:
    """`synmlops ingest` of an orchestrator's and its workers' folders, which must succeed."""
    result = subprocess.run(
        [*SYNMLOPS, "ingest", str(outputs), "--worker-outputs", str(workers),
         "--tracking-uri", server.url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_ingest_catalogues_the_workers_catalogue_json_and_reports_what_it_left_out(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("ingested")
    outputs, workers = write_outputs(tmp_path, c)
    result = ingest(shared_server, outputs, workers)
    report = result.stdout
    assert "runs: 2 new" in report
    assert "worker/broken-w/preprocessing/catalogue.json: is not a data catalogue" in report
    assert "worker/half-w/preprocessing/catalogue.json: is not valid JSON" in report
    assert "lacks src_count, _type" in report and "no 'headers'" in report

    body = get(shared_server, "/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    kinds = {
        p["id"]: {s["split"]: s["datasets"][0]["kind"] for s in p["splits"]}
        for p in collab["participants"]
    }
    assert kinds == {
        "tabular-w": {"train": "tabular", "evaluate": "tabular"},
        "image-w": {"train": "image", "evaluate": "image"},
        "text-w": {"train": "text", "evaluate": "text"},
        "older-w": {"train": "tabular"},  # its kind taken from its fields
    }
    tabular = next(p for p in collab["participants"] if p["id"] == "tabular-w")
    train = tabular["splits"][1]["datasets"][0]
    assert train["runs"] == 2 and train["rows"] == 120
    assert [col["name"] for col in train["columns"]] == HEADERS

    again = subprocess.run(
        [*SYNMLOPS, "ingest", str(outputs), "--worker-outputs", str(workers),
         "--tracking-uri", shared_server.url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    body = get(shared_server, "/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    tabular = next(p for p in collab["participants"] if p["id"] == "tabular-w")
    assert len(tabular["splits"][1]["datasets"]) == 1  # nothing catalogued twice


# --- the worker's own catalogue.json shape -----------------------------------------------------


def test_the_worker_s_catalogue_shape_is_read_whole() -> None:
    """headers {"X", "y"}, schemas with the target, tabular columns under "features" (with
    misc_variables), NaN from describe(): every split read, nothing reported missing."""
    text = json.dumps(worker_catalogue_tabular(("train", "evaluate", "predict")))
    assert "NaN" in text  # as the worker's json.dump writes a statistic pandas could not compute
    entries, notes = parse_worker_catalogue(json.loads(text), "c", "p", "w1")
    assert notes == []
    assert [e.split for e in entries] == ["train", "evaluate", "predict"]
    train = entries[0]
    assert train.kind == "tabular" and train.schema == WORKER_TABULAR_SCHEMA
    assert train.headers == WORKER_TABULAR_HEADERS["X"] + WORKER_TABULAR_HEADERS["y"]
    assert rows_of(train.kind, train.metadata) == 120
    columns = columns_of(train.kind, train.metadata)
    assert set(columns) == {"age", "chol", "sex", "cp", "target", "notes"}
    assert columns["notes"] == {"datatype": "object"}
    assert columns["chol"]["std"] is None  # NaN kept as null
    profile = json.loads(train.profile_json())
    assert (profile["kind"], profile["rows"], profile["src_count"]) == ("tabular", 120, 120)
    assert profile["metadata"]["features"]["num_variables"]["age"]["mean"] == 54.2
    synergos = json.loads(train.schema_json())["synergos"]
    assert synergos["headers"][-2:] == ["target_0", "target_1"]

    (image,) = parse_worker_catalogue(worker_catalogue_image(), "c", "p", "w2")[0]
    assert image.kind == "image" and image.headers[-1] == "target_1"
    assert columns_of(image.kind, image.metadata)["pixel_height"] == {"value": 28}
    (text_entry,) = parse_worker_catalogue(worker_catalogue_text(), "c", "p", "w3")[0]
    assert text_entry.split == "predict" and text_entry.kind == "text"
    assert columns_of("text", text_entry.metadata)["representation"] == {"value": 0.004}


def test_worker_headers_of_another_shape_are_left_out_and_the_split_is_kept() -> None:
    catalogue = worker_catalogue_tabular()
    catalogue["headers"]["evaluate"] = {"X": ["a"], "z": ["b"]}  # type: ignore[index]
    entries, notes = parse_worker_catalogue(catalogue, "c", "p", "w1")
    assert [(e.split, len(e.headers)) for e in entries] == [("train", 10), ("evaluate", 0)]
    assert [(n.reason, n.message) for n in notes] == [
        ("wrong type", "the headers of split 'evaluate' must be a list of column names or "
                       '{"X": [...], "y": [...]}, not keys z; left out'),
    ]  # fmt: skip
    with pytest.raises(InvalidValueError, match="must be lists of column names, not 'age'"):
        dataset_entry("c", "p", "w1", "train", {"_type": "text"}, headers={"X": "age"})


def wrongly_typed_catalogue() -> dict[str, Any]:
    """The worker's catalogue with a wrong type in four places: a schema type NaN, src_count
    as text, features as a list, cat_variables as a column name."""
    catalogue = copy.deepcopy(worker_catalogue_tabular(("train", "evaluate", "predict")))
    catalogue["schemas"]["train"] = {**WORKER_TABULAR_SCHEMA, "age": float("nan")}
    catalogue["metadata"]["train"]["src_count"] = "40"
    catalogue["metadata"]["evaluate"]["features"] = [1, 2]
    catalogue["metadata"]["predict"]["features"]["cat_variables"] = "sex"
    return catalogue


WRONG_TYPES = [
    "the type of column age in the schema of split 'train' is NaN, not a type name; left out",
    "split 'train': src_count is '40', not a row count; left out",
    "split 'evaluate': features is a list, not an object; left out",
    "split 'predict': features.cat_variables is 'sex', not an object of column: statistics; "
    "left out",
]


def test_wrong_types_in_the_worker_s_catalogue_are_left_out_and_named_with_their_reason() -> None:
    entries, notes = parse_worker_catalogue(wrongly_typed_catalogue(), "c", "p", "w1")
    assert sorted((n.reason, n.message) for n in notes) == sorted(
        ("wrong type", m) for m in WRONG_TYPES
    )
    train, evaluate, predict = entries
    assert "age" not in train.schema and "nan" not in train.schema.values()
    assert train.schema == {k: v for k, v in WORKER_TABULAR_SCHEMA.items() if k != "age"}
    profile = json.loads(train.profile_json())
    assert profile["src_count"] is None and profile["rows"] == 120  # from the columns' counts
    assert "src_count" not in train.metadata
    assert "features" not in evaluate.metadata and evaluate.kind == "tabular"
    assert evaluate.schema == WORKER_TABULAR_SCHEMA and rows_of("tabular", evaluate.metadata) == 120
    features = predict.metadata["features"]
    assert "cat_variables" not in features
    assert features["num_variables"]["age"]["mean"] == 54.2  # its neighbours kept
    # The tracker refuses the same wrong types at once, naming them.
    with pytest.raises(InvalidValueError, match="src_count is '40', not a row count"):
        dataset_entry("c", "p", "w1", "train", {"src_count": "40", "_type": "image"})
    with pytest.raises(InvalidValueError, match="type of column age .* is NaN"):
        dataset_entry("c", "p", "w1", "train", {"_type": "tabular"},
                      schema={"age": float("nan")})  # fmt: skip


def test_ingest_names_each_wrong_type_once_and_counts_them_by_reason(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("wrong-types")
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    write_worker_catalogue(workers, "w1", [c, "p"], wrongly_typed_catalogue())
    for run_id in ("r1", "r2"):  # the project's catalogue is part of both runs
        folder = outputs / c / "p" / "e" / run_id
        folder.mkdir(parents=True)
        (folder / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    report = ingest(shared_server, outputs, workers).stdout
    for message in WRONG_TYPES:
        assert report.count(message) == 1, report
    assert "catalogue parts left out or missing, by reason: wrong type 4" in report

    body = get(shared_server, "/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    splits = {s["split"]: s["datasets"] for s in collab["participants"][0]["splits"]}
    assert {split: len(datasets) for split, datasets in splits.items()} == {
        "train": 1, "evaluate": 1, "predict": 1
    }  # fmt: skip
    train = splits["train"][0]
    assert train["src_count"] is None and train["rows"] == 120 and train["runs"] == 2
    assert "nan" not in {col["type"] for col in train["columns"]}
    assert "age" not in {col["name"] for col in train["columns"]}


def test_ingest_catalogues_the_catalogue_json_the_worker_writes(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("worker-shape")
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    folder = outputs / c / "p" / "e" / "r1"
    folder.mkdir(parents=True)
    (folder / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    write_worker_catalogue(workers, "tab-w", [c, "p"], worker_catalogue_tabular())
    write_worker_catalogue(workers, "img-w", [c, "p"], worker_catalogue_image())
    write_worker_catalogue(workers, "txt-w", [c, "p"], worker_catalogue_text())
    result = ingest(shared_server, outputs, workers)
    assert "catalogue.json" not in result.stdout, result.stdout  # nothing left out or partial

    body = get(shared_server, "/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    splits = {
        p["id"]: {s["split"]: s["datasets"][0] for s in p["splits"]} for p in collab["participants"]
    }
    assert {p: {s: d["kind"] for s, d in v.items()} for p, v in splits.items()} == {
        "tab-w": {"train": "tabular", "evaluate": "tabular"},
        "img-w": {"train": "image"},
        "txt-w": {"predict": "text"},
    }
    train = splits["tab-w"]["train"]
    assert (train["rows"], train["src_count"]) == (120, 120)
    # The worker's header order for the columns it names as they are (age, chol), then the
    # rest (one-hot encoded in the headers) by name.
    assert [(col["name"], col["type"]) for col in train["columns"]] == [
        ("age", "int64"), ("chol", "float64"), ("cp", "category"), ("notes", "object"),
        ("sex", "category"), ("target", "category"),
    ]  # fmt: skip
    profile = requests.get(shared_server.url + train["profile"], timeout=60).json()["profile"]
    features = profile["metadata"]["features"]
    assert features["num_variables"]["chol"]["std"] is None
    assert features["misc_variables"] == {"notes": {"datatype": "object"}}
    assert splits["img-w"]["train"]["src_count"] == 300
    assert splits["img-w"]["train"]["rows"] == 300  # src_count is the worker's len(df)


# --- a worker's catalogue that changes between runs -------------------------------------------


def test_a_changed_catalogue_belongs_to_the_runs_that_ran_on_it_not_to_earlier_ones(
    shared_server: Server, tmp_path: Path
) -> None:
    """r1 trains on the worker's first data; the worker then loads new data under a new tag
    (a new catalogue.json) and r2 trains on it. Ingested after each run, r1 keeps its own
    datasets only, its model version's lineage gains nothing, and r2 reports the drift."""
    c = unique("changed")
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    start = time.time() - 7200
    first = worker_catalogue_tabular()
    write_worker_catalogue(workers, "w1", [c, "p"], first, at=start)
    r1 = outputs / c / "p" / "e" / "r1"
    r1.mkdir(parents=True)
    (r1 / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    (r1 / "global_model.pt").write_bytes(b"weights-1")
    set_mtime(r1, start + 600)  # r1 trained after the worker loaded its data
    ingest(shared_server, outputs, workers)

    client = MlflowClient(shared_server.url)
    experiment = client.get_experiment_by_name(f"{c}/p/e")
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`synergos.run` = 'r1' "
                                   "and tags.`synergos.role` = 'federation'")  # fmt: skip
    logged = client.create_logged_model(experiment.experiment_id, name="global_model",
                                        source_run_id=parent.info.run_id)  # fmt: skip
    name = f"model-{c}"
    client.create_registered_model(name)
    client.create_model_version(name, source=f"models:/{logged.model_id}",
                                run_id=parent.info.run_id, model_id=logged.model_id)  # fmt: skip

    def datasets(run_id: str) -> dict[str, Any]:
        answer = get(shared_server, f"/runs/{run_path(c, 'p', 'e', run_id)}/datasets")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    before = {(d["split"], d["digest"]) for d in datasets("r1")["datasets"]}
    assert {split for split, _ in before} == {"train", "evaluate"}

    second = copy.deepcopy(first)
    for split in ("train", "evaluate"):
        second["metadata"][split] = worker_tabular_summary(rows=150)  # type: ignore[index]
    write_worker_catalogue(workers, "w1", [c, "p"], second, at=start + 1200)
    r2 = outputs / c / "p" / "e" / "r2"
    r2.mkdir(parents=True)
    (r2 / "global_loss_history.json").write_text('{"train": {"0": 0.6}}')
    set_mtime(r2, start + 1800)
    report = ingest(shared_server, outputs, workers).stdout
    assert "runs: 1 new" in report, report

    r1_datasets = datasets("r1")
    assert {(d["split"], d["digest"]) for d in r1_datasets["datasets"]} == before
    r2_datasets = datasets("r2")
    after = {(d["split"], d["digest"]) for d in r2_datasets["datasets"]}
    assert len(after) == 2 and not after & before
    assert {(d["split"], d["rows"]) for d in r2_datasets["datasets"]} == {
        ("train", 150), ("evaluate", 150)
    }  # fmt: skip
    drift = {(d["split"], d["against"], d["run"]["run"]) for d in r2_datasets["drift"]}
    assert drift == {("train", "previous", "r1"), ("evaluate", "previous", "r1")}
    trained = requests.get(f"{shared_server.url}{API}/lineage/models/{quote(name)}/1", timeout=60)
    assert trained.status_code == 200, trained.text
    assert {(d["split"], d["digest"]) for d in trained.json()["datasets"]} == before


def test_a_catalogue_newer_than_every_run_of_its_project_waits_for_its_run(
    tmp_path: Path,
) -> None:
    from synergos_mlops.ingest import WorkerOutputs, scan

    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    run = outputs / "c" / "p" / "e" / "r1"
    run.mkdir(parents=True)
    (run / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    set_mtime(run, time.time() - 600)
    write_worker_catalogue(workers, "w1", ["c", "p"], worker_catalogue_tabular(), at=time.time())
    found = scan(outputs, [WorkerOutputs(workers)])
    assert [f.name for f in found.runs[0].files] == ["outputs/global_loss_history.json"]
    assert [str(p) for p in found.problems] == [
        "workers: worker/w1/preprocessing/catalogue.json: data catalogue of project c/p "
        "written after every run of it in OUTPUTS ended (it is the data of a later run); "
        "not ingested yet"
    ]


def test_a_catalogue_nested_deeper_than_the_json_reader_goes_costs_only_itself(
    shared_server: Server, tmp_path: Path
) -> None:
    c = unique("deep")
    outputs, workers = tmp_path / "outputs", tmp_path / "workers"
    folder = outputs / c / "p" / "e" / "r1"
    folder.mkdir(parents=True)
    (folder / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
    deep = write_worker_catalogue(workers, "w1", [c, "p"], {})
    deep.write_text('{"metadata": {"train": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    set_mtime(deep, time.time() - 3600)
    report = ingest(shared_server, outputs, workers).stdout
    assert "runs: 1 new" in report
    assert "catalogue.json: nests deeper than the JSON reader goes" in report
    points = (
        MlflowClient(shared_server.url)
        .search_runs(
            [MlflowClient(shared_server.url).get_experiment_by_name(f"{c}/p/e").experiment_id],
            "tags.`synergos.role` = 'federation'",
        )[0]
        .data.metrics
    )
    assert points == {"train/loss": 0.7}
