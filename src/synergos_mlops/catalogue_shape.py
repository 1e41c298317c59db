"""The worker's catalogue shape, checked part by part: what is valid is kept, what is not is
left out and named with its reason.

One split's summary is ``src_count`` (a whole number of rows), ``_type`` (``tabular``,
``image`` or ``text``) and the kind's fields (see ``synergos_mlops.catalogue``). Each part is
checked on its own, so one bad part never costs its neighbours:

- ``src_count``: a non-negative whole number (``120.0`` is read as ``120``);
- ``_type``: one of the kinds;
- tabular: ``features`` (or the older ``tabular``) an object of column groups;
  ``cat_variables``, ``num_variables`` and ``misc_variables`` objects of column: statistics;
  per column ``datatype`` text, ``count``, ``unique`` and ``freq`` non-negative numbers, the
  other statistics (``mean``, ``std``, ``min``, ``25%``, ``50%``, ``75%``, ``max``) numbers,
  ``top`` a single value, ``labels`` a list of single values;
- image: ``pixel_height``, ``pixel_width`` non-negative whole numbers, ``color`` text;
- text: ``word_count`` a non-negative whole number, ``sparsity`` and ``representation``
  numbers (``representation`` as text, e.g. ``"tfidf"``, is read too: this package's older
  guess);
- a schema: column: the worker's type as text; headers: a list of names or ``{"X", "y"}``.

NaN and infinities (pandas' statistics of an empty column, written by the worker as the bare
token ``NaN``) are kept as null where a number is expected; as a row count, a type or a name
they are left out. Keys this package does not know are kept as they are, unless they hold
something no store can keep: text with a NUL character or a lone surrogate, or nesting
deeper than :data:`MAX_DEPTH` levels.

Every part left out is a :class:`Note` whose ``reason`` is one of :data:`REASONS`, which the
ingest report counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "REASONS",
    "Note",
    "clean_headers",
    "clean_schema",
    "clean_summary",
    "plain",
    "shown",
]

WRONG_TYPE = "wrong type"
OUT_OF_RANGE = "out of range"
BAD_TEXT = "unreadable text"
TOO_DEEP = "too deep"
TOO_LARGE = "too large"
UNKNOWN_KIND = "unknown kind"
UNKNOWN_SPLIT = "unknown split"
UNKNOWN_KEY = "unknown key"
MISSING = "missing"
NO_SUMMARY = "no usable summary"
#: Why a part of a worker's catalogue was left out or is partial, as the ingest report counts.
REASONS = (WRONG_TYPE, OUT_OF_RANGE, BAD_TEXT, TOO_DEEP, TOO_LARGE, UNKNOWN_KIND,
           UNKNOWN_SPLIT, UNKNOWN_KEY, MISSING, NO_SUMMARY)  # fmt: skip
MAX_DEPTH = 16

_KINDS = ("tabular", "image", "text")
_NESTS = {"features": "tabular", "tabular": "tabular", "image": "image", "text": "text"}
_GROUPS = ("cat_variables", "num_variables", "misc_variables")
_COUNTS = ("count", "unique", "freq")
_NUMBERS = ("mean", "std", "min", "25%", "50%", "75%", "max")
_WHOLE = {"pixel_height", "pixel_width", "word_count"}
_FRACTIONS = {"sparsity", "representation"}
_TEXTS = {"color"}
_KIND_FIELDS = {
    "tabular": _GROUPS,
    "image": ("pixel_height", "pixel_width", "color"),
    "text": ("word_count", "sparsity", "representation"),
}


@dataclass(frozen=True)
class Note:
    """A part of a catalogue left out (or missing), its reason and one sentence naming it."""

    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


class Skip(Exception):
    """A part that cannot be kept; carries its Note."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.note = Note(reason, message)


def _join(where: str, name: str) -> str:
    return f"{where}{'' if where.endswith(': ') else '.'}{part(name)}"


def shown(value: object, limit: int = 60) -> str:
    """A value as a message shows it: short, on one line, NaN as NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def part(name: object) -> str:
    """A key as a message names it: as it is when printable and plain, else quoted."""
    text = str(name)
    if text and text.isprintable() and len(text) <= 60 and not any(c in text for c in ".'\" "):
        return text
    return shown(text)


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def check_text(text: str, where: str) -> str:
    problem = text_problem(text)
    if problem is not None:
        raise Skip(BAD_TEXT, f"{where} {problem}; left out")
    return text


def plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as JSON keeps it: non-finite numbers as None; Skip for what no store keeps."""
    if depth > MAX_DEPTH:
        raise Skip(TOO_DEEP, f"{where} nests deeper than {MAX_DEPTH} levels; left out")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return check_text(value, where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = check_text(str(key), f"a key of {where}")
            out[name] = plain(item, _join(where, name), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, where, depth + 1) for item in value]
    raise Skip(WRONG_TYPE, f"{where} holds {type(value).__name__}, which JSON cannot keep; "
                           "left out")  # fmt: skip


def _wrong(where: str, value: object, expected: str) -> Skip:
    return Skip(WRONG_TYPE, f"{where} is {shown(value)}, not {expected}; left out")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any, where: str, what: str) -> int:
    """A non-negative whole number (an integral float is read as an int)."""
    if not _number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise _wrong(where, value, what)
    if value < 0 or (isinstance(value, float) and not value.is_integer()):
        raise Skip(OUT_OF_RANGE, f"{where} is {shown(value)}, not {what}; left out")
    return int(value)


def _count(value: Any, where: str) -> float | int | None:
    """A statistic's count: a non-negative number (NaN kept as null)."""
    if not _number(value) and value is not None:
        raise _wrong(where, value, "a count")
    if value is None or not math.isfinite(value):
        return None
    if value < 0:
        raise Skip(OUT_OF_RANGE, f"{where} is {shown(value)}, not a count; left out")
    return value


def _statistic(value: Any, where: str) -> float | int | None:
    if value is None:
        return None
    if not _number(value):
        raise _wrong(where, value, "a number")
    return value if math.isfinite(value) else None


def _single(value: Any, where: str) -> Any:
    if isinstance(value, (Mapping, list, tuple)):
        raise _wrong(where, value, "a single value")
    return plain(value, where)


def _checked(out: dict[str, Any], key: str, check: Any, notes: list[Note]) -> None:
    try:
        out[key] = check()
    except Skip as skip:
        notes.append(skip.note)


def _column(stats: Mapping[str, Any], where: str, notes: list[Note]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stats.items():
        name = str(key)
        here = _join(where, name)
        try:
            check_text(name, f"a statistic of {where}")
        except Skip as skip:
            notes.append(skip.note)
            continue
        if name == "datatype":
            if not isinstance(value, str):
                notes.append(_wrong(here, value, "a type name").note)
                continue
            _checked(out, name, lambda v=value, h=here: check_text(v, h), notes)
        elif name in _COUNTS:
            _checked(out, name, lambda v=value, h=here: _count(v, h), notes)
        elif name in _NUMBERS:
            _checked(out, name, lambda v=value, h=here: _statistic(v, h), notes)
        elif name == "top":
            _checked(out, name, lambda v=value, h=here: _single(v, h), notes)
        elif name == "labels":
            if not isinstance(value, (list, tuple)):
                notes.append(_wrong(here, value, "a list of labels").note)
                continue
            _checked(out, name, lambda v=value, h=here: [_single(x, h) for x in v], notes)
        else:
            _checked(out, name, lambda v=value, h=here: plain(v, h, 3), notes)
    return out


def _tabular(fields: Mapping[str, Any], where: str, notes: list[Note]) -> dict[str, Any]:
    """A tabular summary's column groups, column by column."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key)
        here = _join(where, name)
        try:
            check_text(name, f"a key of {where}")
        except Skip as skip:
            notes.append(skip.note)
            continue
        if name not in _GROUPS:
            _checked(out, name, lambda v=value, h=here: plain(v, h, 1), notes)
            continue
        if not isinstance(value, Mapping):
            notes.append(_wrong(here, value, "an object of column: statistics").note)
            continue
        columns: dict[str, Any] = {}
        for column, stats in value.items():
            label = str(column)
            at = _join(here, label)
            try:
                check_text(label, f"a column name of {here}")
            except Skip as skip:
                notes.append(skip.note)
                continue
            if not isinstance(stats, Mapping):
                notes.append(_wrong(f"column {at}", stats, "an object of statistics").note)
                continue
            columns[label] = _column(stats, at, notes)
        out[name] = columns
    return out


def _field(kind: str, name: str, value: Any, where: str) -> Any:
    """One image or text field."""
    if name in _WHOLE:
        return _whole(value, where, "a whole number")
    if name == "representation" and isinstance(value, str):  # this package's older guess
        return check_text(value, where)
    if name in _FRACTIONS:
        return _statistic(value, where)
    if name in _TEXTS:
        if not isinstance(value, str):
            raise _wrong(where, value, "text")
        return check_text(value, where)
    return plain(value, where, 1)


def _fields(kind: str, fields: Mapping[str, Any], where: str, notes: list[Note]) -> dict[str, Any]:
    if kind == "tabular":
        return _tabular(fields, where, notes)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key)
        here = _join(where, name)
        try:
            check_text(name, f"a key of {where}")
        except Skip as skip:
            notes.append(skip.note)
            continue
        _checked(out, name, lambda v=value, h=here, n=name: _field(kind, n, v, h), notes)
    return out


def clean_summary(split: str, summary: Mapping[str, Any]) -> tuple[dict[str, Any], list[Note]]:
    """One split's summary with every bad part left out, and a Note for each."""
    notes: list[Note] = []
    out: dict[str, Any] = {}
    flat_kind = {f: k for k, fields in _KIND_FIELDS.items() for f in fields}
    for key, value in summary.items():
        name = str(key)
        where = f"split {split!r}: {part(name)}"
        try:
            check_text(name, f"split {split!r}: a key")
        except Skip as skip:
            notes.append(skip.note)
            continue
        if name == "src_count":
            _checked(out, name, lambda v=value, w=where: _whole(v, w, "a row count"), notes)
        elif name == "_type":
            if not isinstance(value, str):
                notes.append(_wrong(where, value, "tabular, image or text").note)
            elif value not in _KINDS:
                notes.append(Note(UNKNOWN_KIND, f"{where} is {shown(value)}, not tabular, "
                                                "image or text; left out"))  # fmt: skip
            else:
                out[name] = value
        elif name in _NESTS:
            if not isinstance(value, Mapping):
                notes.append(_wrong(where, value, "an object").note)
                continue
            out[name] = _fields(_NESTS[name], value, where, notes)
        elif name in flat_kind:
            kind = flat_kind[name]
            if kind == "tabular":
                out.update(_tabular({name: value}, f"split {split!r}: ", notes))
            else:
                _checked(out, name, lambda v=value, w=where, n=name, k=kind: _field(k, n, v, w),
                         notes)  # fmt: skip
        else:
            _checked(out, name, lambda v=value, w=where: plain(v, w), notes)
    return out, notes


def clean_schema(split: str, schema: object) -> tuple[dict[str, str], list[Note]]:
    """A split's schema (column: the worker's type), its bad columns left out."""
    if schema is None:
        return {}, []
    if not isinstance(schema, Mapping):
        where = f"the schema of split {split!r}"
        return {}, [_wrong(where, schema, "an object of column: type").note]
    notes: list[Note] = []
    out: dict[str, str] = {}
    for column, datatype in schema.items():
        label = str(column)
        where = f"the type of column {part(label)} in the schema of split {split!r}"
        try:
            check_text(label, f"a column name in the schema of split {split!r}")
            if not isinstance(datatype, str):
                raise _wrong(where, datatype, "a type name")
            out[label] = check_text(datatype, where)
        except Skip as skip:
            notes.append(skip.note)
    return out, notes


def clean_headers(split: str, headers: object) -> tuple[list[str], list[Note]]:
    """A split's headers as one list (the worker's ``{"X", "y"}``: X then y); headers of
    another shape are left out whole (their order is the model's: a part is no use)."""
    if headers is None:
        return [], []
    where = f"the headers of split {split!r}"
    expected = 'a list of column names or {"X": [...], "y": [...]}'
    parts: list[object]
    if isinstance(headers, Mapping):
        unknown = sorted(str(k) for k in headers if k not in ("X", "y"))
        if unknown:
            keys = ", ".join(part(k) for k in unknown[:5])
            return [], [Note(WRONG_TYPE, f"{where} must be {expected}, not keys {keys}; left out")]
        parts = [headers.get("X"), headers.get("y")]
    else:
        parts = [headers]
    names: list[str] = []
    for piece in parts:
        if piece is None:
            continue
        if not isinstance(piece, (list, tuple)) or not all(isinstance(h, str) for h in piece):
            message = f"{where} must be lists of column names, not {shown(piece)}; left out"
            return [], [Note(WRONG_TYPE, message)]
        for name in piece:
            problem = text_problem(name)
            if problem is not None:
                return [], [Note(BAD_TEXT, f"a column name in {where} {problem}; left out")]
            names.append(name)
    return names, []
