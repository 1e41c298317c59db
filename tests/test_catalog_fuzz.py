"""Property-based tests of the worker's catalogue.json: variants with wrong types, missing
keys, bare NaN, float counts, huge and deeply nested values and random Unicode, mixed into a
good catalogue. The good datasets are catalogued exactly once with the values the good
catalogue alone gives; every bad part is left out and named with its reason; nothing
escapes, and the catalogue routes answer without a server error afterwards.

Bounded in the test run (the conftest's "default" profile); HYPOTHESIS_PROFILE=fuzz runs
the long profile."""

from __future__ import annotations

import copy
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_trees import worker_catalogue_tabular, write_worker_catalogue

from synergos_mlops.catalogue import DatasetEntry, dataset_entry, parse_worker_catalogue
from synergos_mlops.catalogue_shape import (
    BAD_TEXT,
    MAX_DEPTH,
    REASONS,
    TOO_DEEP,
    UNKNOWN_KEY,
    UNKNOWN_SPLIT,
    WRONG_TYPE,
    text_problem,
)
from synergos_mlops.errors import InvalidValueError

API = "/api/synergos/v1"
GOOD_SPLITS = ("train", "evaluate")
KNOWN_KEYS = ("headers", "schemas", "metadata", "train", "evaluate", "predict")

#: Any text, lone surrogates and NUL included (what json.loads can give from \\u escapes).
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True), any_text,
    st.text(max_size=2000),  # a huge string
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"deeper": value}
    return value


#: Values no store keeps whatever the key: deeper than the limit, or unreadable text.
always_bad = st.one_of(
    st.integers(MAX_DEPTH + 2, 60).map(nested),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy"]),
)
#: Values that are never an object (for a column's statistics) and never text (for a type).
not_objects_nor_text = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.lists(json_values, max_size=3),
)  # fmt: skip


@st.composite
def good_catalogues(draw: st.DrawFn) -> dict[str, Any]:
    """The worker's catalogue of two splits, as a worker may write it: sections missing
    (an older worker), src_count as a float, a NaN statistic."""
    catalogue: dict[str, Any] = copy.deepcopy(worker_catalogue_tabular(GOOD_SPLITS))
    for section in ("headers", "schemas"):
        if draw(st.booleans()):
            del catalogue[section]
    for split in GOOD_SPLITS:
        summary = catalogue["metadata"][split]
        if draw(st.booleans()):
            summary["src_count"] = float(summary["src_count"])
        if draw(st.booleans()):
            summary["features"]["num_variables"]["age"]["std"] = float("nan")
    return catalogue


@st.composite
def mixed_catalogues(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """(good catalogue, the same with bad parts mixed in, how many bad parts of each kind)."""
    good = draw(good_catalogues())
    mixed = copy.deepcopy(good)
    bad = {"top": 0, "split": 0, "column": 0, "schema": 0, "unstorable": 0}
    for _ in range(draw(st.integers(0, 2))):  # keys the worker never writes
        key = draw(any_text.filter(lambda k: k not in KNOWN_KEYS))
        if key not in mixed:
            mixed[key] = draw(json_values)
            bad["top"] += 1
    for _ in range(draw(st.integers(0, 2))):  # splits other than train, evaluate, predict
        split = draw(any_text.filter(lambda k: k not in ("train", "evaluate", "predict")))
        if split not in mixed["metadata"]:
            mixed["metadata"][split] = draw(json_values)
            bad["split"] += 1
    if draw(st.booleans()):  # a third split of anything at all
        mixed["metadata"]["predict"] = draw(json_values)
        for section in ("headers", "schemas"):
            if section in mixed and draw(st.booleans()):
                mixed[section]["predict"] = draw(json_values)
    for index in range(draw(st.integers(0, 3))):  # columns whose statistics are no object
        split = draw(st.sampled_from(GOOD_SPLITS))
        group = draw(st.sampled_from(["cat_variables", "num_variables", "misc_variables"]))
        features = mixed["metadata"][split]["features"]
        features[group][f"bad{index}"] = draw(not_objects_nor_text)
        bad["column"] += 1
    if "schemas" in mixed:  # schema types that are no text: NaN, numbers, lists...
        for index in range(draw(st.integers(0, 3))):
            split = draw(st.sampled_from(GOOD_SPLITS))
            mixed["schemas"][split][f"badtype{index}"] = draw(not_objects_nor_text)
            bad["schema"] += 1
    for index in range(draw(st.integers(0, 2))):  # too deep, or text no database keeps
        split = draw(st.sampled_from(GOOD_SPLITS))
        mixed["metadata"][split][f"extra{index}"] = draw(always_bad)
        bad["unstorable"] += 1
    return good, mixed, bad


def by_split(entries: list[DatasetEntry]) -> dict[str, list[DatasetEntry]]:
    found: dict[str, list[DatasetEntry]] = {}
    for entry in entries:
        found.setdefault(entry.split, []).append(entry)
    return found


def through_json(data: object) -> Any:
    """As the worker's json.dump writes it and the ingester's json.loads reads it back."""
    return json.loads(json.dumps(data))


@given(catalogues=mixed_catalogues())
def test_good_splits_are_catalogued_once_as_the_good_catalogue_alone_gives_them(
    catalogues: tuple[dict[str, Any], dict[str, Any], dict[str, int]],
) -> None:
    good, mixed, bad = catalogues
    expected, _ = parse_worker_catalogue(through_json(good), "c", "p", "w1")
    try:
        found, notes = parse_worker_catalogue(through_json(mixed), "c", "p", "w1")
    except InvalidValueError as exc:  # the one refusal allowed: never for a good split
        raise AssertionError(f"a catalogue with good splits was refused: {exc}") from None
    splits = by_split(found)
    for split, (entry,) in by_split(expected).items():
        assert len(splits[split]) == 1, split  # exactly once
        got = splits[split][0]
        assert (got.kind, got.metadata, got.schema, got.headers) == (
            entry.kind, entry.metadata, entry.schema, entry.headers
        )  # fmt: skip
        assert got.digest == entry.digest
        assert json.loads(got.profile_json())["rows"] == 120
    assert all(n.reason in REASONS and n.message for n in notes)
    reasons = [n.reason for n in notes]
    assert reasons.count(UNKNOWN_KEY) == bad["top"]
    assert reasons.count(UNKNOWN_SPLIT) >= bad["split"]
    for index in range(bad["column"]):
        assert any(f"bad{index}" in n.message and n.reason == WRONG_TYPE for n in notes), notes
    for index in range(bad["schema"]):
        assert any(f"badtype{index}" in n.message and n.reason == WRONG_TYPE for n in notes)
    for index in range(bad["unstorable"]):
        assert any(f"extra{index}" in n.message and n.reason in (TOO_DEEP, BAD_TEXT)
                   for n in notes), notes  # fmt: skip


@given(data=json_values)
def test_any_json_at_all_is_catalogued_or_refused_with_one_message(data: Any) -> None:
    for candidate in (data, {"metadata": {"train": data}}, {"schemas": {"train": data}},
                      {"metadata": {"train": {"_type": "tabular", "features": data}}}):  # fmt: skip
        try:
            entries, notes = parse_worker_catalogue(candidate, "c", "p", "w1")
        except InvalidValueError as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        for entry in entries:  # what is kept, MLflow and every database keep
            for text in (entry.schema_json(), entry.profile_json(), entry.source):
                text.encode("utf-8")
                assert "\x00" not in text
            # and the tracker, which the ingester hands it to, takes it as it is
            again = dataset_entry("c", "p", "w1", entry.split, entry.metadata,
                                  schema=entry.schema, headers=entry.headers)  # fmt: skip
            assert again.digest == entry.digest
        assert all(n.reason in REASONS for n in notes)
        for note in notes:  # one line of the report each, printable anywhere
            assert "\n" not in note.message and text_problem(note.message) is None


def ingest_once(server: Server, catalogue: dict[str, Any]) -> tuple[str, Any]:
    """Ingest one run and a worker's catalogue.json (in process, into the served store)."""
    from synergos_mlops.ingest import Ingester, WorkerOutputs, scan

    c = f"fuzz-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="catalogue-fuzz-") as tmp:
        outputs, workers = Path(tmp) / "outputs", Path(tmp) / "workers"
        folder = outputs / c / "p" / "e" / "r1"
        folder.mkdir(parents=True)
        (folder / "global_loss_history.json").write_text('{"train": {"0": 0.7}}')
        write_worker_catalogue(workers, "w1", [c, "p"], catalogue, at=time.time() - 60)
        ingester = Ingester(server.url)
        try:
            report = ingester.ingest(scan(outputs, [WorkerOutputs(workers)]))
        finally:
            ingester.close()
    return c, report


@settings(
    max_examples=max(3, settings().max_examples // 10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(catalogues=mixed_catalogues())
def test_ingested_variants_keep_the_good_datasets_and_the_catalogue_routes_answer(
    shared_server: Server,
    catalogues: tuple[dict[str, Any], dict[str, Any], dict[str, int]],
) -> None:
    good, mixed, _ = catalogues
    expected, _ = parse_worker_catalogue(through_json(good), "c", "p", "w1")
    c, report = ingest_once(shared_server, mixed)
    assert [o.status for o in report.outcomes] == ["new"], report.summary()
    lines = report.summary()
    assert len(lines) == len(set(lines))  # every part named once

    def get(path: str) -> requests.Response:
        response = requests.get(f"{shared_server.url}{path}", timeout=60)
        assert response.status_code < 500, (path, response.text[:300])
        return response

    body = get(f"{API}/catalogue").json()
    (collab,) = [x for x in body["collaborations"] if x["id"] == c]
    (participant,) = collab["participants"]
    splits = {s["split"]: s["datasets"] for s in participant["splits"]}
    for entry in expected:
        (dataset,) = splits[entry.split]  # exactly once
        assert dataset["digest"] == entry.digest and dataset["rows"] == 120
    for datasets in splits.values():
        for dataset in datasets:
            assert get(dataset["profile"]).status_code == 200
            get(f"{API}/lineage/datasets/{quote(c)}/w1/{dataset['digest']}")
    for path in (f"{API}/runs/{quote(c)}/p/e/r1/datasets", f"{API}/lineage/runs/{quote(c)}/p/e/r1"):
        assert get(path).status_code == 200
