"""How a run's series are answered: as JSON lists, or typed (binary columns in base64), whole
or cut to a step window, and decimated to a chart's width when asked.

A typed series is ``{"count": n, "steps": "<base64 int64[n]>", "values": "<base64
float64[n]>", "decimated": bool}``, little-endian, NaN as the float's own NaN: the same
binary columns as the tracker's batch format 2 (``storage/batch.py``), so a page reads them
with a ``BigInt64Array`` and a ``Float64Array`` without parsing a number.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.series import Line, decimate, step_span

__all__ = [
    "FORMATS",
    "MAX_POINTS",
    "SeriesQuery",
    "TYPED_FORMAT",
    "line_answer",
    "series_axis",
    "shaped_lines",
]

#: The ``format`` parameter's values: JSON lists of numbers (the default), or typed columns.
FORMATS = ("lists", "typed")
#: What a typed answer names itself in ``"format"``.
TYPED_FORMAT = "synergos.series/typed"
#: The most buckets (pixel columns) a series may be decimated to.
MAX_POINTS = 100_000


@dataclass(frozen=True)
class SeriesQuery:
    """What a series request asks beyond its keys: a step window (``first`` to ``last``,
    both included), at most about two points per bucket of ``points`` (None: every point),
    and the answer's ``format``."""

    points: int | None = None
    first: int | None = None
    last: int | None = None
    format: str = "lists"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidValueError(
                f"format must be one of {', '.join(FORMATS)}, not {self.format!r}"
            )
        if self.points is not None and not 1 <= self.points <= MAX_POINTS:
            raise InvalidValueError(f"points must be from 1 to {MAX_POINTS}, not {self.points}")
        for name, step in (("min_step", self.first), ("max_step", self.last)):
            if step is not None and not -(2**63) <= step < 2**63:
                raise InvalidValueError(f"{name} must fit in 64 bits, not {step}")
        if self.first is not None and self.last is not None and self.first > self.last:
            raise InvalidValueError(
                f"min_step ({self.first}) must not be greater than max_step ({self.last})"
            )

    @property
    def windowed(self) -> bool:
        return self.first is not None or self.last is not None

    @property
    def plain(self) -> bool:
        """The request of the first API: every point, as lists."""
        return self.format == "lists" and self.points is None and not self.windowed


def series_axis(key: str) -> str:
    """What a key's steps count: hardware seconds, epochs or rounds."""
    if key.startswith("system/"):
        return "seconds"
    return "epoch" if "/epoch/" in f"/{key}" else "round"


def shaped_lines(lines: dict[str, Line], query: SeriesQuery) -> dict[str, Line]:
    """One key's series decimated as the query asks: every series of the key cut into the
    same buckets (the query's window, or the steps the series span together), so that
    their kept points line up on the chart's pixel columns."""
    if query.points is None:
        return lines
    span = step_span(list(lines.values()))
    if span is None:
        return lines
    first = span[0] if query.first is None else query.first
    last = span[1] if query.last is None else query.last
    return {owner: decimate(line, query.points, first, last) for owner, line in lines.items()}


def _base64(array: Any, dtype: str) -> str:
    return base64.b64encode(array.astype(dtype, copy=False).tobytes()).decode("ascii")


def line_answer(line: Line, query: SeriesQuery) -> dict[str, Any]:
    """One series as the query's format gives it."""
    if query.format == "typed":
        return {
            "count": len(line),
            "steps": _base64(line.steps, "<i8"),
            "values": _base64(line.values, "<f8"),
            "decimated": line.decimated,
        }
    values = line.values.tolist()
    answer: dict[str, Any] = {
        "steps": line.steps.tolist(),
        "values": [None if v != v else v for v in values],  # NaN is null
    }
    if not query.plain:
        answer["decimated"] = line.decimated
    return answer
