"""Data catalogue entries: what a participant's data looks like, never the data itself.

The original Synergos worker summarises each split of a participant's data (``train``,
``evaluate``, ``predict``) and writes the summaries to a project's
``preprocessing/catalogue.json``. Its shape, as the worker's ``load_proc`` writes it (see
docs/catalogue.md for the source)::

    {"headers":  {"train": {"X": ["age", "sex_1", "sex_2", ...], "y": ["target"]}, ...},
     "schemas":  {"train": {"age": "int64", "sex": "category", "target": "category"}, ...},
     "metadata": {"train": {"src_count": 303, "_type": "tabular",
                            "features": {"cat_variables": {...}, "num_variables": {...},
                                         "misc_variables": {...}}}, ...}}

A tabular summary nests its columns under ``features``; an image or text summary is flat. By
kind:

- tabular: ``cat_variables`` ``{column: {datatype, labels, count, unique, top, freq}}``,
  ``num_variables`` ``{column: {datatype, count, mean, std, min, 25%, 50%, 75%, max}}`` and
  ``misc_variables`` ``{column: {datatype}}`` (object columns, no statistics);
- image: ``pixel_height``, ``pixel_width``, ``color``;
- text: ``word_count``, ``sparsity``, ``representation``.

Headers are the model's (one-hot encoded) feature and target columns, ``{"X": [...], "y":
[...]}``; an entry keeps them as one list, X then y. Also read, for summaries logged before the
shape was confirmed: a kind's fields nested under the kind's name (``{"_type": "tabular",
"tabular": {...}}``), all flat, headers as a plain list, and per-split summaries at the top
level of the file (``{"train": {...}, "headers": ...}``).

:func:`dataset_entry` turns one summary into an MLflow dataset (name, digest, source type
:data:`SOURCE_TYPE`, source, schema, profile) for the participant's run, with the split as its
``mlflow.data.context`` input tag. This module only checks and converts; it imports nothing
heavy, and is shared by the tracker, the ingester and the server.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synergos_mlops import catalogue_shape as shape
from synergos_mlops.catalogue_shape import Note
from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import STAGES, validate_id

__all__ = [
    "CONTEXT_TAG",
    "KINDS",
    "SOURCE_TYPE",
    "SPLITS",
    "DatasetEntry",
    "Note",
    "column_changes",
    "dataset_entry",
    "parse_worker_catalogue",
]

SPLITS: tuple[str, ...] = STAGES
KINDS: tuple[str, ...] = ("tabular", "image", "text")
SOURCE_TYPE = "synergos-participant"
CONTEXT_TAG = "mlflow.data.context"
DIGEST_LENGTH = 32  # MLflow keeps at most 36 characters of a dataset digest
#: MLflow's limits on a dataset's schema and profile (mlflow.utils.validation), in characters.
MAX_SCHEMA_SIZE = 1_048_575
MAX_PROFILE_SIZE = 16_777_215

#: The worker's pandas dtypes as MLflow column types (MLflow's UI reads ``mlflow_colspec``).
_MLFLOW_TYPES = {
    "int64": "long", "int32": "integer", "int16": "integer", "int8": "integer",
    "float64": "double", "float32": "float", "bool": "boolean",
    "datetime64[ns]": "datetime",
}  # fmt: skip
_KIND_FIELDS = {
    "tabular": ("cat_variables", "num_variables", "misc_variables"),
    "image": ("pixel_height", "pixel_width", "color"),
    "text": ("word_count", "sparsity", "representation"),
}
#: Where a kind's fields may be nested: the worker puts a tabular summary's columns under
#: ``features``; a key named after the kind is this package's older guess, still read.
_NESTS = {"tabular": ("features", "tabular"), "image": ("image",), "text": ("text",)}
#: The column groups of a tabular summary; only the first two carry a ``count``.
_COLUMN_GROUPS = ("cat_variables", "num_variables", "misc_variables")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


@dataclass(frozen=True)
class DatasetEntry:
    """One participant's split, as the catalogue keeps it."""

    collaboration: str
    project: str
    participant: str
    split: str
    kind: str | None
    metadata: dict[str, Any]
    schema: dict[str, str]  # column -> the worker's datatype
    headers: list[str]

    @property
    def name(self) -> str:
        return f"{self.participant}/{self.split}"

    @property
    def digest(self) -> str:
        """A hash of the canonical JSON of the summary, schema and headers."""
        return _digest({"metadata": self.metadata, "schema": self.schema, "headers": self.headers})

    @property
    def schema_digest(self) -> str:
        return _digest({"schema": self.schema, "headers": self.headers})

    @property
    def source(self) -> str:
        return _canonical(
            {
                "collaboration": self.collaboration,
                "project": self.project,
                "participant": self.participant,
            }
        )

    def schema_json(self) -> str:
        colspec = [
            {"name": name, "type": _MLFLOW_TYPES.get(datatype, "string")}
            for name, datatype in self.schema.items()
        ]
        return _canonical(
            {"mlflow_colspec": colspec, "synergos": {"datatypes": self.schema,
                                                     "headers": self.headers}}
        )  # fmt: skip

    def profile_json(self) -> str:
        return _canonical(
            {
                "kind": self.kind,
                "rows": rows_of(self.kind, self.metadata),
                "src_count": self.metadata.get("src_count"),
                "schema_digest": self.schema_digest,
                "metadata": self.metadata,
            }
        )

    def to_mlflow(self) -> dict[str, Any]:
        """The ``runs/log-inputs`` body of this entry: MLflow's DatasetInput as JSON."""
        return {
            "tags": [{"key": CONTEXT_TAG, "value": self.split}],
            "dataset": {
                "name": self.name,
                "digest": self.digest,
                "source_type": SOURCE_TYPE,
                "source": self.source,
                "schema": self.schema_json(),
                "profile": self.profile_json(),
            },
        }


def _nested(metadata: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The kind's fields where they sit nested (the first non-empty nest), else None."""
    for key in _NESTS[kind]:
        value = metadata.get(key)
        if isinstance(value, Mapping) and value:
            return dict(value)
    return None


def _summary(metadata: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(kind, the kind's fields) of one split's summary, nested or flat."""
    declared = metadata.get("_type")
    kind = declared if declared in KINDS else None
    if kind is None:  # an older worker: no _type; the kind whose fields are present
        kind = next(
            (
                k for k in KINDS
                if _nested(metadata, k) is not None
                or any(f in metadata for f in _KIND_FIELDS[k])
            ),
            None,
        )  # fmt: skip
    if kind is None:
        return None, {}
    nested = _nested(metadata, kind)
    if nested is not None:
        return kind, nested
    return kind, {f: metadata[f] for f in _KIND_FIELDS[kind] if f in metadata}


def rows_of(kind: str | None, metadata: Mapping[str, Any]) -> int | None:
    """The row count: the worker's ``src_count`` (its ``len(df)`` of the split), else for a
    tabular summary the largest column count, else None."""
    src = metadata.get("src_count")
    if isinstance(src, (int, float)) and not isinstance(src, bool) and 0 <= src < math.inf:
        return int(src)
    if kind != "tabular":
        return None
    _, fields = _summary(metadata)
    counts = [
        column.get("count")
        for group in ("cat_variables", "num_variables")
        if isinstance(fields.get(group), Mapping)
        for column in fields[group].values()
        if isinstance(column, Mapping)
    ]
    numbers = [int(c) for c in counts if isinstance(c, (int, float)) and math.isfinite(c)]
    return max(numbers, default=None)


def columns_of(kind: str | None, metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column (tabular) or per field (image, text): its summary, for drift."""
    _, fields = _summary(metadata)
    if kind != "tabular":
        return {name: {"value": value} for name, value in fields.items()}
    out: dict[str, dict[str, Any]] = {}
    for group in _COLUMN_GROUPS:
        columns = fields.get(group)
        for name, column in (columns if isinstance(columns, Mapping) else {}).items():
            out[str(name)] = dict(column) if isinstance(column, Mapping) else {"value": column}
    return out


def column_changes(
    before: tuple[str | None, Mapping[str, Any], Mapping[str, str]],
    after: tuple[str | None, Mapping[str, Any], Mapping[str, str]],
) -> dict[str, list[str]]:
    """Columns added, removed, whose type changed and whose summary changed, between two
    (kind, metadata, schema) of one participant's split."""
    old_columns, new_columns = columns_of(before[0], before[1]), columns_of(after[0], after[1])
    old_types = {**{k: v.get("datatype") for k, v in old_columns.items()}, **before[2]}
    new_types = {**{k: v.get("datatype") for k, v in new_columns.items()}, **after[2]}
    old_names, new_names = set(old_types) | set(old_columns), set(new_types) | set(new_columns)
    common = old_names & new_names
    return {
        "added": sorted(new_names - old_names),
        "removed": sorted(old_names - new_names),
        "type_changed": sorted(c for c in common if old_types.get(c) != new_types.get(c)),
        "profile_changed": sorted(c for c in common if old_columns.get(c) != new_columns.get(c)),
    }


def _checked_entry(
    ids: tuple[str, str, str],
    split: str,
    metadata: Mapping[str, Any],
    schema: object,
    headers: object,
) -> tuple[DatasetEntry | None, list[Note]]:
    """One split's entry from what is valid of its parts, and a Note for each part left out;
    no entry (a Note says why) when nothing usable is left or it is more than MLflow keeps."""
    plain, notes = shape.clean_summary(split, metadata)
    kind, _ = _summary(plain)
    if kind is not None and "_type" not in plain:
        plain["_type"] = kind
    columns, schema_notes = shape.clean_schema(split, schema)
    header_names, header_notes = shape.clean_headers(split, headers)
    notes += schema_notes + header_notes
    if not columns and kind == "tabular":
        columns = {
            name: summary["datatype"] if isinstance(summary.get("datatype"), str) else "unknown"
            for name, summary in columns_of(kind, plain).items()
        }
    if kind is None and not columns:
        notes.append(Note(shape.NO_SUMMARY, f"split {split!r} has no summary of a known kind "
                                             "and no schema; left out"))  # fmt: skip
        return None, notes
    entry = DatasetEntry(*ids, split, kind, plain, columns, header_names)
    for what, size, limit in (
        ("schema", len(entry.schema_json()), MAX_SCHEMA_SIZE),
        ("summary", len(entry.profile_json()), MAX_PROFILE_SIZE),
    ):
        if size > limit:
            notes.append(Note(shape.TOO_LARGE, f"the {what} of split {split!r} is {size:,} "
                                               f"characters, more than MLflow keeps ({limit:,}); "
                                               "left out"))  # fmt: skip
            return None, notes
    return entry, notes


def dataset_entry(
    collaboration: str,
    project: str,
    participant: str,
    split: str,
    metadata: Mapping[str, Any],
    schema: Mapping[str, Any] | None = None,
    headers: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
) -> DatasetEntry:
    """Check one split's summary and make its catalogue entry (InvalidValueError naming the
    first problem otherwise: a part of the wrong type is refused, not dropped)."""
    for kind_of_id, value in (
        ("collaboration", collaboration), ("project", project), ("participant", participant)
    ):  # fmt: skip
        validate_id(kind_of_id, value)
    if split not in SPLITS:
        raise InvalidValueError(f"split {split!r} must be one of {', '.join(SPLITS)}")
    if not isinstance(metadata, Mapping):
        raise InvalidValueError(f"the metadata of split {split!r} must be an object")
    entry, notes = _checked_entry(
        (collaboration, project, participant), split, metadata, schema, headers
    )
    if notes:
        raise InvalidValueError(notes[0].message.removesuffix("; left out"))
    assert entry is not None
    return entry


def parse_worker_catalogue(
    data: object, collaboration: str, project: str, participant: str
) -> tuple[list[DatasetEntry], list[Note]]:
    """The entries of a worker's ``catalogue.json``, each from what is valid of its split,
    and a Note on every part left out or missing; InvalidValueError when the file holds no
    usable split at all."""
    if not isinstance(data, Mapping):
        raise InvalidValueError("must be an object of headers, schemas and metadata per split")
    for kind_of_id, value in (
        ("collaboration", collaboration), ("project", project), ("participant", participant)
    ):  # fmt: skip
        validate_id(kind_of_id, value)
    notes: list[Note] = []

    def add(reason: str, message: str) -> None:
        notes.append(Note(reason, message))

    known = {"headers", "schemas", "metadata", *SPLITS}
    for key in data:
        if key not in known:
            add(
                shape.UNKNOWN_KEY,
                f"key {shape.shown(str(key))} is not part of the worker's catalogue; ignored",
            )

    def section(key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            if key != "metadata":
                add(shape.MISSING, f"no {key!r} (an older worker?); entries are made without them")
            return {}
        if not isinstance(value, Mapping):
            add(
                shape.WRONG_TYPE,
                f"{key!r} is {shape.shown(value)}, not an object of split: value; left out",
            )
            return {}
        for split in value:
            if split not in SPLITS:
                add(
                    shape.UNKNOWN_SPLIT,
                    f"split {shape.shown(str(split))} in {key!r} is not "
                    f"one of {', '.join(SPLITS)}; left out",
                )
        return {k: v for k, v in value.items() if k in SPLITS}

    headers, schemas = section("headers"), section("schemas")
    metadata = {**{s: data[s] for s in SPLITS if s in data}, **section("metadata")}
    entries: list[DatasetEntry] = []
    for split in SPLITS:
        summary = metadata.get(split)
        if summary is None:
            if split in headers or split in schemas:
                add(
                    shape.MISSING,
                    f"split {split!r} has headers or a schema but no metadata; "
                    "catalogued from them alone",
                )
                summary = {}
            else:
                continue
        if not isinstance(summary, Mapping):
            add(
                shape.WRONG_TYPE,
                f"the metadata of split {split!r} is {shape.shown(summary)}, "
                "not an object; left out",
            )
            continue
        missing = [f for f in ("src_count", "_type") if f not in summary]
        if missing and summary:
            add(shape.MISSING, f"split {split!r} lacks {', '.join(missing)}; catalogued without it")
        entry, found = _checked_entry(
            (collaboration, project, participant), split, summary, schemas.get(split),
            headers.get(split),
        )  # fmt: skip
        notes.extend(found)
        if entry is not None:
            entries.append(entry)
    if not entries:
        shown = "; ".join(n.message for n in notes[:3])
        more = f"; and {len(notes) - 3} more" if len(notes) > 3 else ""
        raise InvalidValueError(
            "holds no usable split (expected train, evaluate or predict summaries)"
            + (f": {shown}{more}" if notes else "")
        )
    return entries, notes
