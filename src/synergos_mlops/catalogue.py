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

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import STAGES, validate_id

__all__ = [
    "CONTEXT_TAG",
    "KINDS",
    "SOURCE_TYPE",
    "SPLITS",
    "DatasetEntry",
    "column_changes",
    "dataset_entry",
    "parse_worker_catalogue",
]

SPLITS: tuple[str, ...] = STAGES
KINDS: tuple[str, ...] = ("tabular", "image", "text")
SOURCE_TYPE = "synergos-participant"
CONTEXT_TAG = "mlflow.data.context"
DIGEST_LENGTH = 32  # MLflow keeps at most 36 characters of a dataset digest

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


def _plain(value: Any, where: str) -> Any:
    """JSON-able, finite: NaN and infinities (pandas' describe() of an empty column) → None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise InvalidValueError(f"{where} holds {type(value).__name__}, which JSON cannot keep")


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


def _header_list(headers: object, split: str) -> list[str]:
    """The split's headers as one list: the worker's ``{"X": [...], "y": [...]}`` gives X then
    y; a plain list of names is kept as it is."""
    if headers is None:
        return []
    parts: list[object]
    if isinstance(headers, Mapping):
        unknown = sorted(str(k) for k in headers if k not in ("X", "y"))
        if unknown:
            raise InvalidValueError(
                f"the headers of split {split!r} must be a list of column names or "
                f'{{"X": [...], "y": [...]}}, not keys {", ".join(unknown)}'
            )
        parts = [headers.get("X"), headers.get("y")]
    else:
        parts = [headers]
    names: list[str] = []
    for part in parts:
        if part is None:
            continue
        if (
            not isinstance(part, Sequence)
            or isinstance(part, (str, bytes))
            or not all(isinstance(h, str) for h in part)
        ):
            raise InvalidValueError(
                f"the headers of split {split!r} must be a list of column names"
            )
        names.extend(str(h) for h in part)
    return names


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
    problem otherwise)."""
    for kind_of_id, value in (
        ("collaboration", collaboration), ("project", project), ("participant", participant)
    ):  # fmt: skip
        validate_id(kind_of_id, value)
    if split not in SPLITS:
        raise InvalidValueError(f"split {split!r} must be one of {', '.join(SPLITS)}")
    if not isinstance(metadata, Mapping):
        raise InvalidValueError(f"the metadata of split {split!r} must be an object")
    plain = _plain(dict(metadata), f"{split} metadata")
    kind, fields = _summary(plain)
    if kind is not None and "_type" not in plain:
        plain["_type"] = kind
    if schema is not None and not isinstance(schema, Mapping):
        raise InvalidValueError(f"the schema of split {split!r} must be an object of column: type")
    header_names = _header_list(headers, split)
    columns = {str(k): str(v) for k, v in (schema or {}).items()}
    if not columns and kind == "tabular":
        columns = {
            name: str(summary.get("datatype") or "unknown")
            for name, summary in columns_of(kind, plain).items()
        }
    del fields
    return DatasetEntry(
        collaboration, project, participant, split, kind, plain, columns, header_names
    )


def parse_worker_catalogue(
    data: object, collaboration: str, project: str, participant: str
) -> tuple[list[DatasetEntry], list[str]]:
    """The entries of a worker's ``catalogue.json`` and notes on what was partial or left
    out; InvalidValueError when the file holds no usable split at all."""
    if not isinstance(data, Mapping):
        raise InvalidValueError("must be an object of headers, schemas and metadata per split")

    def part(key: str) -> dict[str, Any]:
        value = data.get(key)
        return dict(value) if isinstance(value, Mapping) else {}

    headers, schemas = part("headers"), part("schemas")
    metadata = {**{s: data[s] for s in SPLITS if s in data}, **part("metadata")}
    notes: list[str] = []
    for key in ("headers", "schemas"):
        if key not in data:
            notes.append(f"no {key!r} (an older worker?); entries are made without them")
    entries: list[DatasetEntry] = []
    for split in SPLITS:
        summary = metadata.get(split)
        if summary is None:
            if split in headers or split in schemas:
                notes.append(f"split {split!r} has headers or a schema but no metadata; "
                             "catalogued from them alone")  # fmt: skip
                summary = {}
            else:
                continue
        if not isinstance(summary, Mapping):
            notes.append(f"the metadata of split {split!r} is not an object; left out")
            continue
        missing = [f for f in ("src_count", "_type") if f not in summary]
        if missing and summary:
            notes.append(f"split {split!r} lacks {', '.join(missing)}; catalogued without it")
        try:
            entry = dataset_entry(
                collaboration, project, participant, split, summary,
                schema=schemas.get(split), headers=headers.get(split),
            )  # fmt: skip
        except InvalidValueError as exc:
            notes.append(f"{exc}; split {split!r} left out")
            continue
        if entry.kind is None and not entry.schema:
            notes.append(f"split {split!r} has no summary of a known kind; left out")
            continue
        entries.append(entry)
    if not entries:
        raise InvalidValueError(
            "holds no usable split (expected train, evaluate or predict summaries)"
            + (f": {'; '.join(notes)}" if notes else "")
        )
    return entries, notes
