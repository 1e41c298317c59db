"""Reading an MLflow *file store* while its writer keeps writing, without writing to it.

The layout (mlflow 1.x, as the original Synergos TTP's mlflow 1.7.2 writes it, and 2.x/3.x)::

    <root>/<experiment id>/meta.yaml              experiment_id, name, artifact_location
    <root>/<experiment id>/<run uuid>/meta.yaml   run_uuid, status, start_time, end_time,
                                                  lifecycle_stage, artifact_uri, ...
    <root>/<experiment id>/<run uuid>/params/<key>     the value
    <root>/<experiment id>/<run uuid>/tags/<key>       the value
    <root>/<experiment id>/<run uuid>/metrics/<key>    lines "timestamp value [step]"
    <root>/<experiment id>/<run uuid>/artifacts/...
    <root>/.trash/...                              deleted experiments

Keys holding ``/`` are nested folders. Nothing here writes below ``root``; links that lead
out of it are never followed. A :class:`MetricCursor` remembers how far each metric file was
read, so a pass reads only what was appended, and a last line still being written (no
newline yet) waits for the next pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "FileStoreError",
    "ExperimentFolder",
    "MetricCursor",
    "PassReport",
    "StoreExperiment",
    "StoreRun",
    "experiment_folders",
    "holds_experiments",
    "is_inside",
    "read_experiment",
    "read_key_files",
    "read_run",
    "run_folders",
    "trusted",
]

T = TypeVar("T")

META = "meta.yaml"
TRASH = ".trash"
#: Folders an experiment holds beside its runs in MLflow 2.x/3.x file stores.
_NOT_RUNS = frozenset({"models", "traces", "datasets", "tags", "logged_models", "prompts"})
#: RunStatus numbers as file stores write them.
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


class FileStoreError(Exception):
    """One part of the file store cannot be read now; the message says which and why."""


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path``, links resolved, lies inside ``root`` (itself resolved)."""
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _read_yaml(path: Path, root: Path) -> dict[str, Any]:
    import yaml

    if path.is_symlink() and not is_inside(path, root):
        raise FileStoreError(f"{path} links outside the store")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileStoreError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileStoreError(f"{path} cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FileStoreError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FileStoreError(f"{path} holds no mapping")
    return data


def _required(data: dict[str, Any], path: Path, *names: str) -> None:
    for name in names:
        if data.get(name) in (None, ""):
            raise FileStoreError(f"{path} has no {name} (incomplete or still being written)")


@dataclass(frozen=True)
class StoreExperiment:
    folder: str
    """The experiment's folder name: its id in the file store."""
    name: str
    lifecycle_stage: str
    artifact_location: str | None


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StoreRun:
    run_uuid: str
    experiment_folder: str
    name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    user_id: str
    artifact_uri: str | None


@dataclass(frozen=True)
class ExperimentFolder:
    path: Path
    relative: str
    """Inside the root: ``<id>``, or ``<collaboration>/<project>/<id>`` in a per-project store."""
    project: tuple[str, str] | None
    """(collaboration, project) of a per-project store, else None."""


def _subfolders(folder: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_dir():
                yield entry


#: Folders of the server's own in a store root, never a file store.
_OURS = ("artifacts", "filestore-backup-")


@dataclass
class PassReport:
    """What one pass of the mirror saw and did."""

    experiments: int = 0
    runs: int = 0
    points: int = 0
    seconds: float = 0.0
    problems: dict[str, str] = field(default_factory=dict)
    """path -> why it was skipped in this pass (it is tried again in the next)."""


def holds_experiments(root: Path) -> bool:
    """Whether ``root`` holds any file-store experiment (a cheap listing, no file read); True
    when it cannot be listed, so the mirror's own pass reads it and says why."""
    try:
        return next(experiment_folders(root), None) is not None
    except OSError:
        return True


def experiment_folders(root: Path) -> Iterator[ExperimentFolder]:
    """The active experiment folders of ``root`` (``.trash`` is left out): ``<root>/<id>/``
    and, as an earlier TTP wrote one file store per project, ``<root>/<c>/<p>/<id>/``."""
    for entry in _subfolders(str(root)):
        if os.path.isfile(os.path.join(entry.path, META)):
            yield ExperimentFolder(Path(entry.path), entry.name, None)
        elif not entry.name.startswith(_OURS):
            for project in _subfolders(entry.path):
                if os.path.isfile(os.path.join(project.path, META)):
                    continue
                for experiment in _subfolders(project.path):
                    if os.path.isfile(os.path.join(experiment.path, META)):
                        relative = f"{entry.name}/{project.name}/{experiment.name}"
                        yield ExperimentFolder(
                            Path(experiment.path), relative, (entry.name, project.name)
                        )


def run_folders(experiment: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(experiment) as entries:
        for entry in entries:
            if entry.is_dir() and entry.name not in _NOT_RUNS and not entry.name.startswith("."):
                yield entry


def read_experiment(folder: Path, root: Path) -> StoreExperiment:
    path = folder / META
    data = _read_yaml(path, root)
    _required(data, path, "experiment_id", "name")
    if str(data["experiment_id"]) != folder.name:
        raise FileStoreError(
            f"{path} names experiment {data['experiment_id']!r}, not its folder {folder.name!r}"
        )
    return StoreExperiment(
        folder=folder.name,
        name=str(data["name"]),
        lifecycle_stage=str(data.get("lifecycle_stage") or "active"),
        artifact_location=data.get("artifact_location"),
    )


def read_run(folder: Path, root: Path) -> StoreRun:
    path = folder / META
    data = _read_yaml(path, root)
    run_uuid = data.get("run_uuid") or data.get("run_id")
    if not run_uuid:
        raise FileStoreError(f"{path} has no run_uuid (incomplete or still being written)")
    if str(run_uuid) != folder.name:
        raise FileStoreError(f"{path} names run {run_uuid!r}, not its folder {folder.name!r}")
    _required(data, path, "experiment_id")
    status = data.get("status")
    status_name = _STATUS.get(status, "RUNNING") if isinstance(status, int) else str(status)
    if status_name not in _STATUS.values():
        status_name = "RUNNING"
    name = data.get("run_name") or data.get("name") or None
    return StoreRun(
        run_uuid=str(run_uuid),
        experiment_folder=folder.parent.name,
        name=str(name) if name else None,
        status=status_name,
        start_time=_int(data.get("start_time")),
        end_time=_int(data.get("end_time")),
        lifecycle_stage=str(data.get("lifecycle_stage") or "active"),
        user_id=str(data.get("user_id") or ""),
        artifact_uri=data.get("artifact_uri"),
    )


def _key_files(folder: Path, root: Path, prefix: str = "") -> Iterator[tuple[str, Path, Any]]:
    """``(key, path, stat)`` of every file below ``folder``; nested folders are keys with /."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink() and not is_inside(path, root):
            raise FileStoreError(f"{path} links outside the store")
        if entry.is_dir():
            yield from _key_files(path, root, f"{prefix}{entry.name}/")
        elif entry.is_file():
            yield f"{prefix}{entry.name}", path, entry.stat()


#: How long after a change a file's time and size are not yet trusted to tell a later change
#: (nanoseconds): a file system keeps times to its clock's tick, not to the nanosecond, so a
#: file rewritten within the same tick, to the same size, looks unchanged.
SETTLE_NS = 2_000_000_000


def trusted(signature: T, mtime_ns: int) -> T | None:
    """``signature`` when its newest time ``mtime_ns`` is at least :data:`SETTLE_NS` away
    from now, else None, which never equals a signature: what it describes is read again on
    the next pass, until it has settled."""
    return signature if abs(time.time_ns() - mtime_ns) >= SETTLE_NS else None


def read_key_files(
    folder: Path, root: Path, known: tuple[Any, ...] | None = None
) -> tuple[tuple[Any, ...] | None, dict[str, str] | None]:
    """The params or tags of a run: ``(signature, {key: value})``. The signature (names,
    sizes, times) changes whenever any of them does; when it equals ``known`` nothing is
    read and the values are None. It is None while a file changed in the last
    :data:`SETTLE_NS` (:func:`trusted`)."""
    files = sorted(_key_files(folder, root))
    signature = tuple((key, stat.st_size, stat.st_mtime_ns) for key, _, stat in files)
    if signature == known:
        return signature, None
    values: dict[str, str] = {}
    for key, path, _ in files:
        try:
            values[key] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileStoreError(f"{path} cannot be read ({exc})") from None
    newest = max((stat.st_mtime_ns for _, _, stat in files), default=0)
    return trusted(signature, newest), values


@dataclass
class MetricCursor:
    """How far each metric file of one run has been read."""

    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    """key -> (file identity (inode), bytes consumed)."""

    def read_new(
        self, folder: Path, root: Path
    ) -> tuple[dict[str, list[tuple[int, float, int]]], list[str]]:
        """Points appended since the last call: ``{key: [(timestamp, value, step), ...]}``,
        and a reason for every line or file that could not be read."""
        new: dict[str, list[tuple[int, float, int]]] = {}
        problems: list[str] = []
        for key, path, stat in _key_files(folder, root):
            inode, done = self.offsets.get(key, (stat.st_ino, 0))
            if inode != stat.st_ino or stat.st_size < done:
                done = 0  # rewritten: read again from the start; the writer is idempotent
            if stat.st_size == done:
                self.offsets[key] = (stat.st_ino, done)
                continue
            try:
                with path.open("rb") as handle:
                    handle.seek(done)
                    chunk = handle.read(stat.st_size - done)
            except OSError as exc:
                problems.append(f"{path} cannot be read ({exc.strerror})")
                continue
            complete = chunk.rfind(b"\n") + 1  # a last line without newline is still written
            points: list[tuple[int, float, int]] = []
            for number, line in enumerate(chunk[:complete].splitlines()):
                fields = line.split()
                if not fields:
                    continue
                try:
                    timestamp, value = int(fields[0]), float(fields[1])
                    step = int(fields[2]) if len(fields) > 2 else 0
                    if len(fields) > 3:
                        raise ValueError
                except (ValueError, IndexError):
                    text = line[:80].decode("utf-8", "replace")
                    problems.append(f"{path}: line {number + 1} after byte {done} is {text!r}")
                    continue
                points.append((timestamp, value, step))
            self.offsets[key] = (stat.st_ino, done + complete)
            if points:
                new[key] = points
        return new, problems
