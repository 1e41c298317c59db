"""Hyperparameter-tuning studies: what a study is and how it is kept in MLflow's own entities.

A study groups the federated runs (trials) of one experiment that search one space for the
best value of one metric. Nothing of it lives in a server's memory, so every replica of the
server sees the same state:

- the definition is an experiment tag ``synergos.study.<name>`` holding JSON
  ``{"search_space", "metric", "direction", "created"}``;
- a trial is a federation run tagged ``synergos.study`` = the study's name and
  ``synergos.trial`` = its number (1, 2, ...); a trial whose hyperparameters fall outside the
  search space also gets ``synergos.trial.outside_space`` = a JSON list of those names; a
  trial numbered by the server carries ``synergos.trial.request`` = the tracker's request id,
  so a request retried after its answer was lost finds that trial instead of numbering another;
  ``synergos.param_types`` = JSON ``{name: type}`` of its hyperparameters that are not strings
  (see :func:`param_types`), so each comes back as the value and type the tuner chose;
  ``synergos.trial.tuner`` = JSON ``{"tuner", "trial"}``: the tuner's own trial number or id;
- a queued trial is a run whose status is SCHEDULED until it is run.

A study's search space may grow: a tuner whose trials suggest parameters on some branches only
(a conditional space) defines it with ``extend``, and it becomes the union of what trials
suggested; a trial without one of its parameters has it absent (not applicable).

Search spaces are NNI's (the original Synergos Director's): ``{"lr": {"_type": "choice",
"_value": [0.1, 0.01]}, ...}`` with ``_type`` one of :data:`SPACE_TYPES`. Runs named
``optim_run_<n>`` without a study tag (ingested, or written by an original TTP) belong to the
default study :data:`DEFAULT_STUDY` of their experiment, trial ``n``.

This module only checks and converts; it imports nothing heavy.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from synergos_mlops.errors import InvalidIdError, InvalidValueError
from synergos_mlops.federation import validate_id

__all__ = [
    "DEFAULT_STUDY",
    "DIRECTIONS",
    "LEGACY_TRIAL",
    "SPACE_TYPES",
    "PARAM_TYPES",
    "TAG_OUTSIDE_SPACE",
    "TAG_PARAM_TYPES",
    "TAG_STUDY",
    "TAG_STUDY_PREFIX",
    "TAG_TRIAL",
    "TAG_TRIAL_REQUEST",
    "TAG_TUNER",
    "StudyDefinition",
    "decode_params",
    "json_safe",
    "legacy_trial_number",
    "outside_space",
    "param_types",
    "parse_value",
    "read_types",
    "same_value",
    "type_of",
    "types_tag",
    "trial_run_name",
    "validate_search_space",
    "validate_study_name",
]

TAG_STUDY_PREFIX = "synergos.study."
TAG_STUDY = "synergos.study"
TAG_TRIAL = "synergos.trial"
TAG_OUTSIDE_SPACE = "synergos.trial.outside_space"
TAG_TRIAL_REQUEST = "synergos.trial.request"
TAG_PARAM_TYPES = "synergos.param_types"
TAG_TUNER = "synergos.trial.tuner"
#: The types a hyperparameter's text is decoded through (a name not typed is a ``str``).
PARAM_TYPES = ("bool", "null", "int", "float", "json", "str")
_TAG_VALUE_LIMIT = 8000  # MLflow's limit on a run tag's value
DIRECTIONS = ("maximize", "minimize")
#: The study that runs named ``optim_run_<n>`` without a study tag belong to.
DEFAULT_STUDY = "optim"
LEGACY_TRIAL = re.compile(r"^optim_run_(\d+)$")

#: NNI's search-space types and how many numbers their ``_value`` holds (None: a list).
SPACE_TYPES: dict[str, int | None] = {
    "choice": None,
    "randint": 2,
    "uniform": 2,
    "quniform": 3,
    "loguniform": 2,
    "qloguniform": 3,
    "normal": 2,
    "qnormal": 3,
    "lognormal": 2,
    "qlognormal": 3,
}
#: MLflow's tag keys: letters, digits, ``_ - . : /`` and spaces; ``/`` is no id's.
_TAG_SAFE = re.compile(r"^[\w\-.: ]+$")
_MAX_NAME = 200  # the tag key stays within MLflow's 250 characters


def validate_study_name(name: object) -> str:
    """A study name: an id (no ``/``) that MLflow accepts inside a tag key."""
    text = validate_id("study", name)
    if len(text) > _MAX_NAME or not _TAG_SAFE.match(text):
        raise InvalidIdError(
            f"study name {text!r} may hold letters, digits, '_', '-', '.', ':' and spaces only "
            f"(at most {_MAX_NAME} characters)"
        )
    return text


def _number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidValueError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def validate_search_space(space: object) -> dict[str, dict[str, Any]]:
    """Check an NNI search space (a mapping, or its JSON text) and return it as a dict.

    Each entry is ``{"_type": one of SPACE_TYPES, "_value": [...]}``; bounds must be in
    order, ``choice`` needs at least one option, log types need positive bounds.
    """
    if isinstance(space, (str, bytes)):
        try:
            space = json.loads(space)
        except ValueError as exc:
            raise InvalidValueError(f"search space is not JSON: {exc}") from None
    if not isinstance(space, Mapping):
        raise InvalidValueError(
            'search space must map a hyperparameter to {"_type": ..., "_value": [...]}'
        )
    checked: dict[str, dict[str, Any]] = {}
    for name, entry in space.items():
        if not isinstance(name, str) or not name:
            raise InvalidValueError(f"search space key {name!r} must be a non-empty string")
        where = f"search space {name!r}"
        if not isinstance(entry, Mapping) or set(entry) != {"_type", "_value"}:
            raise InvalidValueError(f'{where} must be {{"_type": ..., "_value": [...]}}')
        kind, values = entry["_type"], entry["_value"]
        if kind not in SPACE_TYPES:
            raise InvalidValueError(
                f"{where}: _type {kind!r} is not one of {', '.join(SPACE_TYPES)}"
            )
        if not isinstance(values, (list, tuple)):
            raise InvalidValueError(f"{where}: _value must be a list")
        arity = SPACE_TYPES[kind]
        if arity is None:
            if not values:
                raise InvalidValueError(f"{where}: choice needs at least one option")
        else:
            if len(values) != arity:
                raise InvalidValueError(f"{where}: {kind} takes {arity} numbers in _value")
            numbers = [_number(f"{where} _value", v) for v in values]
            if "normal" in kind:
                if numbers[1] <= 0:
                    raise InvalidValueError(f"{where}: sigma must be positive")
            elif numbers[0] > numbers[1] or (kind == "randint" and numbers[0] == numbers[1]):
                raise InvalidValueError(f"{where}: lower bound above upper bound")
            if kind in ("loguniform", "qloguniform") and numbers[0] <= 0:
                raise InvalidValueError(f"{where}: {kind} bounds must be positive")
            if kind.startswith("q") and numbers[2] <= 0:
                raise InvalidValueError(f"{where}: q must be positive")
        checked[name] = {"_type": kind, "_value": list(values)}
    return checked


def parse_value(text: str) -> Any:
    """A param as MLflow keeps it (text) back to the value it was, for a run logged without
    types: JSON if it parses."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _decode(text: str, kind: str) -> Any:
    if kind == "bool":
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    if kind == "null":
        if text != "None":
            raise ValueError(text)
        return None
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "json":
        return json.loads(text)
    return text


def same_value(a: Any, b: Any) -> bool:
    """Whether two hyperparameter values are the same value of the same kind: a bool is
    never a number, a string never a number or a bool; numbers compare by value (1 == 1.0),
    NaN is NaN and -0.0 is not 0.0."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if _is_bool(a) or _is_bool(b):
        return _is_bool(a) and _is_bool(b) and bool(a) == bool(b)
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return bool(a == b) and math.copysign(1.0, x) == math.copysign(1.0, y)
    return bool(a == b)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's too


def type_of(value: Any) -> str:
    """The name in :data:`PARAM_TYPES` of a hyperparameter value (``str`` for anything the
    text of which is all that is kept)."""
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    if _is_bool(value):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, (list, tuple, dict)):
        return "json"
    return "str"


def param_types(hyperparameters: Mapping[str, Any], texts: Mapping[str, str]) -> dict[str, str]:
    """``{name: type}`` of the hyperparameters that are not strings, each checked to decode
    from its param text (``texts``, as logged) back to the same value; one that does not (a
    truncated value, an object kept as its text) is left out, so it reads back as its text."""
    types: dict[str, str] = {}
    for name, value in hyperparameters.items():
        kind = type_of(value)
        if kind == "str" or name not in texts:
            continue
        try:
            back = _decode(texts[name], kind)
        except (ValueError, TypeError):
            continue
        if kind == "json" or same_value(back, value):
            types[name] = kind
    return types


def types_tag(types: Mapping[str, str]) -> str | None:
    """The ``synergos.param_types`` tag's value, None when beyond MLflow's limit."""
    text = json.dumps(dict(sorted(types.items())), ensure_ascii=False)
    return text if len(text) <= _TAG_VALUE_LIMIT else None


def read_types(tag: str | None) -> dict[str, str] | None:
    """The types a ``synergos.param_types`` tag holds; None without one (or unreadable)."""
    if tag is None:
        return None
    try:
        found = json.loads(tag)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    return {str(k): str(v) for k, v in found.items() if v in PARAM_TYPES}


def decode_params(
    params: Mapping[str, str], types: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A run's params (text) as the values they were, and each one's type. With the run's
    types (its ``synergos.param_types`` tag) each decodes through its type (a name not typed
    is a string); without (a run logged without them: ingested, older) as JSON if it parses."""
    values: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for name, text in sorted(params.items()):
        if types is None:
            value = parse_value(text)
        else:
            try:
                value = _decode(text, types.get(name, "str"))
            except (ValueError, TypeError):
                value = text
        values[name] = value
        kinds[name] = type_of(value)
    return values, kinds


def json_safe(value: Any) -> Any:
    """A decoded value as strict JSON holds it: a NaN or infinite float becomes the string
    ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (its type, ``float``, says so)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def _inside(entry: Mapping[str, Any], value: Any, lenient: bool = False) -> bool:
    kind, bounds = entry["_type"], entry["_value"]
    if kind == "choice":
        if any(same_value(value, option) for option in bounds):
            return True
        return lenient and (
            any(value == option or str(value) == str(option) for option in bounds)
            or (isinstance(value, str) and any(parse_value(value) == option for option in bounds))
        )
    if isinstance(value, str) and lenient:
        value = parse_value(value)
    if _is_bool(value) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        return False
    value = float(value)
    if "normal" in kind:
        return value > 0 if kind in ("lognormal", "qlognormal") else True
    low, high = float(bounds[0]), float(bounds[1])
    if kind == "randint":
        return float(value).is_integer() and low <= value < high
    return low <= value <= high


def outside_space(
    space: Mapping[str, Mapping[str, Any]], hyperparameters: Mapping[str, Any],
    *, lenient: bool = False,
) -> list[str]:  # fmt: skip
    """The names of the hyperparameters whose value lies outside the search space (sorted).
    A searched name the trial does not set (not applicable), or a name the space does not
    search, is not. A value is inside when it is one of a choice's options, of the same kind
    (the string ``"null"`` is not ``None``), or a number within the bounds; ``lenient`` (for
    runs logged without types) also takes a value whose text is an option's."""
    return sorted(
        name
        for name, entry in space.items()
        if name in hyperparameters and not _inside(entry, hyperparameters[name], lenient)
    )


def legacy_trial_number(run_name: str) -> int | None:
    """The trial number of a run the original Director named ``optim_run_<n>``, else None."""
    found = LEGACY_TRIAL.match(run_name)
    return int(found.group(1)) if found else None


def trial_run_name(study: str, number: int) -> str:
    """The run id a new trial gets: ``<study>_run_<n>``, the original Director's naming."""
    return f"{study}_run_{number}"


@dataclass(frozen=True)
class StudyDefinition:
    """What a study searches: the experiment tag ``synergos.study.<name>``."""

    name: str
    search_space: dict[str, dict[str, Any]]
    metric: str
    direction: str
    created: int | None = None  # ms since the epoch

    @classmethod
    def build(
        cls, name: str, search_space: object, metric: str, direction: str,
        created: int | None = None,
    ) -> StudyDefinition:  # fmt: skip
        """Check every field; raise InvalidIdError / InvalidValueError naming the problem."""
        from synergos_mlops.validate import check_metric_key

        name = validate_study_name(name)
        space = validate_search_space(search_space)
        if not isinstance(metric, str):
            raise InvalidValueError(f"metric {metric!r} must be a metric key such as evaluate/loss")
        check_metric_key(metric)
        if direction not in DIRECTIONS:
            raise InvalidValueError(f"direction {direction!r} must be maximize or minimize")
        return cls(name, space, metric, direction, created)

    @property
    def tag_key(self) -> str:
        return TAG_STUDY_PREFIX + self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "search_space": self.search_space,
            "metric": self.metric,
            "direction": self.direction,
            "created": self.created,
        }

    def tag_value(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def same_search(self, other: StudyDefinition) -> bool:
        return (self.search_space, self.metric, self.direction) == (
            other.search_space, other.metric, other.direction,
        )  # fmt: skip

    def extended_by(self, other: StudyDefinition) -> StudyDefinition | None:
        """This definition with the parameters ``other`` searches and this one does not (the
        union of the two spaces; a parameter both search keeps this one's entry); None when
        ``other`` has another metric or direction."""
        if (self.metric, self.direction) != (other.metric, other.direction):
            return None
        added = {k: v for k, v in other.search_space.items() if k not in self.search_space}
        return replace(self, search_space={**self.search_space, **added})

    @classmethod
    def from_tag(cls, key: str, value: str) -> StudyDefinition | None:
        """The definition kept in an experiment tag; None for a tag that is not one."""
        if not key.startswith(TAG_STUDY_PREFIX):
            return None
        try:
            data = json.loads(value)
            return cls.build(
                key[len(TAG_STUDY_PREFIX) :], data["search_space"], data["metric"],
                data["direction"], data.get("created"),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, InvalidValueError, InvalidIdError):
            return None
