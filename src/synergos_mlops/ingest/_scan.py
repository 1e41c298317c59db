"""Scan an orchestrator's output folder (and workers' output folders) into run folders.

Pure functions over folders: nothing here talks to MLflow. Every path that is read is
resolved and checked to stay under the root it was found in; links are never followed out
of that root, links to folders are never followed, and anything that is not a regular file
(a FIFO, a socket, a device) is never opened.

::

    <outputs>/<collaboration>/<project>/<experiment>/<run>/
        global_model.pt, global_loss_history.json,
        local_model_<participant>.pt, local_loss_history_<participant>.json,
        checkpoints/round_<r>/epoch_<e>/<the same four kinds of file>
    <worker outputs>/<participant>/<c>/<p>/<e>/<r>/<stage>/       (shared folder), or
    <worker outputs>/<c>/<p>/<e>/<r>/<stage>/                     (PARTICIPANT=DIR)
        inference_statistics_<stage>.json, inference_predictions_<stage>.txt,
        inference_scores_<stage>.txt
    <worker outputs>/[<participant>/]<c>/<p>/preprocessing/catalogue.json
        the worker's summary of its data per split: catalogued on every run of <c>/<p>
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from synergos_mlops.errors import IngestError, InvalidIdError
from synergos_mlops.federation import STAGES, validate_id

__all__ = [
    "FileEntry",
    "Kind",
    "Problem",
    "RunFolder",
    "Scan",
    "WorkerOutputs",
    "parse_worker_outputs",
    "scan",
]

RUN_DEPTH = 4  # <collaboration>/<project>/<experiment>/<run>
CATALOGUE_FILE = "catalogue.json"  # in <worker outputs>/<c>/<p>/preprocessing/
LAYOUT = "<collaboration>/<project>/<experiment>/<run>/"
_ROUND = re.compile(r"round_(0|[1-9][0-9]*)")
_EPOCH = re.compile(r"epoch_(0|[1-9][0-9]*)")


class Kind(StrEnum):
    GLOBAL_MODEL = "global model"
    GLOBAL_LOSS = "global loss history"
    LOCAL_MODEL = "local model"
    LOCAL_LOSS = "local loss history"
    STATISTICS = "inference statistics"
    PREDICTIONS = "inference predictions"
    SCORES = "inference scores"
    CATALOGUE = "data catalogue"


@dataclass(frozen=True)
class Problem:
    """Something that was not ingested, and why (``where`` is shown relative to its root)."""

    where: str
    reason: str
    code: str = ""  # what the ingest report counts it under (a catalogue part's reason)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class FileEntry:
    """One known file of a run, as it was when scanned.

    ``name`` is the file's place in the run's manifest: ``outputs/<path in the run folder>``
    or ``worker/<participant>/<stage>/<file>``. ``path`` is the resolved file that is read.
    """

    name: str
    path: Path
    size: int
    mtime_ns: int
    kind: Kind
    participant: str | None = None
    round: int | None = None
    epoch: int | None = None
    stage: str | None = None

    @property
    def filename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def signature(self) -> tuple[str, int, int]:
        return (self.name, self.size, self.mtime_ns)


@dataclass
class RunFolder:
    """The known files of one run: its output folder's and its workers'."""

    collaboration: str
    project: str
    experiment: str
    run: str
    path: Path
    files: list[FileEntry] = field(default_factory=list)

    @property
    def ids(self) -> tuple[str, str, str, str]:
        return (self.collaboration, self.project, self.experiment, self.run)

    @property
    def label(self) -> str:
        return "/".join(self.ids)

    @property
    def participants(self) -> list[str]:
        return sorted({f.participant for f in self.files if f.participant is not None})

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def digest(self) -> str:
        return files_digest(f.signature for f in self.files)

    def only(self, names: set[str]) -> RunFolder:
        """A copy that keeps only the files named."""
        kept = [f for f in self.files if f.name in names]
        return RunFolder(*self.ids, path=self.path, files=kept)


def files_digest(
    signatures: Iterator[tuple[str, int, int]] | Sequence[tuple[str, int, int]],
) -> str:
    """A digest of (name, size, mtime_ns) triples: equal digests mean nothing was touched."""
    hasher = hashlib.sha256()
    for name, size, mtime_ns in sorted(signatures):
        hasher.update(f"{name}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return hasher.hexdigest()


@dataclass
class Scan:
    """What a scan found: run folders to ingest and problems to report."""

    runs: list[RunFolder] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # whole runs that cannot be ingested
    problems: list[Problem] = field(default_factory=list)  # files and folders left out


@dataclass(frozen=True)
class WorkerOutputs:
    """A workers' output folder: shared (``participant`` None, one folder per participant
    first) or one worker's own folder (``participant`` given)."""

    root: Path
    participant: str | None = None


def parse_worker_outputs(value: str) -> WorkerOutputs:
    """``DIR`` (a folder shared by several workers) or ``PARTICIPANT=DIR`` (one worker's)."""
    if not value:
        raise IngestError("--worker-outputs must name a folder")
    as_path = Path(value)
    participant, sep, folder = value.partition("=")
    if sep and participant and folder:
        if as_path.is_dir() and Path(folder).is_dir():
            raise IngestError(
                f"--worker-outputs {value!r} is ambiguous: both {value!r} and {folder!r} are "
                f"folders; use ./{value} for the shared folder"
            )
        if not as_path.is_dir():
            try:
                validate_id("participant", participant)
            except InvalidIdError as exc:
                raise IngestError(f"--worker-outputs {value!r}: {exc}") from None
            return WorkerOutputs(_root(Path(folder), "--worker-outputs"), participant)
    return WorkerOutputs(_root(as_path, "--worker-outputs"))


def _root(path: Path, what: str) -> Path:
    if not path.exists():
        raise IngestError(f"{what} folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise IngestError(f"{what} {str(path)!r} is not a folder")
    return path.resolve()


def _show(path: Path, root: Path) -> str:
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = path.as_posix()
    return shown or "."


def _entries(
    folder: Path, root: Path, problems: list[Problem]
) -> Iterator[tuple[str, Path, bool, os.stat_result]]:
    """The entries of ``folder`` that may be read: (name, resolved path, is_dir, stat).

    Links are resolved; a link that leaves ``root``, a link to a folder, a broken link and
    anything but regular files and folders is reported and left out.
    """
    try:
        with os.scandir(folder) as it:
            listed = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(Problem(_show(folder, root), f"cannot be listed ({exc.strerror})"))
        return
    for entry in listed:
        path = Path(entry.path)
        shown = _show(path, root)
        try:
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    problems.append(Problem(shown, "link points outside the folder; not read"))
                    continue
                try:
                    info = target.stat()
                except OSError:
                    problems.append(Problem(shown, "broken link; not read"))
                    continue
                if stat.S_ISDIR(info.st_mode):
                    problems.append(Problem(shown, "link to a folder; not followed"))
                    continue
            else:
                target = path
                info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            problems.append(Problem(shown, f"cannot be read ({exc.strerror})"))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield entry.name, target, True, info
        elif stat.S_ISREG(info.st_mode):
            yield entry.name, target, False, info
        else:
            problems.append(Problem(shown, "not a regular file; not read"))


def _checked_ids(names: Sequence[str]) -> str | None:
    """The reason the folder names cannot be ids, or None."""
    kinds = ("collaboration", "project", "experiment", "run")
    for kind, name in zip(kinds, names, strict=False):
        try:
            validate_id(kind, name)
        except InvalidIdError as exc:
            return str(exc)
    return None


def _participant_file(name: str, prefix: str, suffix: str) -> str | None:
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
        return name[len(prefix) : -len(suffix)]
    return None


def _classify(name: str) -> tuple[Kind, str | None] | None:
    if name == "global_model.pt":
        return Kind.GLOBAL_MODEL, None
    if name == "global_loss_history.json":
        return Kind.GLOBAL_LOSS, None
    participant = _participant_file(name, "local_model_", ".pt")
    if participant is not None:
        return Kind.LOCAL_MODEL, participant
    participant = _participant_file(name, "local_loss_history_", ".json")
    if participant is not None:
        return Kind.LOCAL_LOSS, participant
    return None


def _model_files(
    folder: Path,
    root: Path,
    prefix: str,
    problems: list[Problem],
    round_: int | None = None,
    epoch: int | None = None,
) -> Iterator[tuple[str, Path, bool, os.stat_result] | FileEntry]:
    """The known files of a run folder or checkpoint folder; folders are passed back."""
    for name, path, is_dir, info in _entries(folder, root, problems):
        if is_dir:
            yield name, path, is_dir, info
            continue
        known = _classify(name)
        shown = _show(folder / name, root)
        if known is None:
            problems.append(Problem(shown, "unknown file; not ingested"))
            continue
        kind, participant = known
        if participant is not None:
            try:
                validate_id("participant", participant)
            except InvalidIdError as exc:
                problems.append(Problem(shown, f"{exc}; not ingested"))
                continue
        yield FileEntry(
            name=f"outputs/{prefix}{name}",
            path=path,
            size=info.st_size,
            mtime_ns=info.st_mtime_ns,
            kind=kind,
            participant=participant,
            round=round_,
            epoch=epoch,
        )


def _scan_run(folder: Path, root: Path, names: list[str], scan: Scan) -> None:
    collaboration, project, experiment, run_id = names
    run = RunFolder(collaboration, project, experiment, run_id, path=folder)
    problems = scan.problems
    for item in _model_files(folder, root, "", problems):
        if isinstance(item, FileEntry):
            run.files.append(item)
            continue
        name, path, _, _ = item
        if name != "checkpoints":
            problems.append(Problem(_show(folder / name, root), "unknown folder; not ingested"))
            continue
        for round_name, round_path, round_is_dir, _ in _entries(path, root, problems):
            shown = _show(path / round_name, root)
            match = _ROUND.fullmatch(round_name)
            if not round_is_dir or match is None:
                problems.append(Problem(shown, "not a round_<r> folder; not ingested"))
                continue
            round_ = int(match.group(1))
            for epoch_name, epoch_path, epoch_is_dir, _ in _entries(round_path, root, problems):
                shown = _show(round_path / epoch_name, root)
                match = _EPOCH.fullmatch(epoch_name)
                if not epoch_is_dir or match is None:
                    problems.append(Problem(shown, "not an epoch_<e> folder; not ingested"))
                    continue
                epoch = int(match.group(1))
                prefix = f"checkpoints/{round_name}/{epoch_name}/"
                for inner in _model_files(epoch_path, root, prefix, problems, round_, epoch):
                    if isinstance(inner, FileEntry):
                        run.files.append(inner)
                    else:
                        problems.append(
                            Problem(
                                _show(epoch_path / inner[0], root), "unknown folder; not ingested"
                            )
                        )
    label = "/".join(names)
    if not run.files:
        scan.skipped.append(Problem(label, "run folder holds no known files"))
        return
    scan.runs.append(run)


def _scan_outputs(root: Path, scan: Scan) -> None:
    def walk(folder: Path, names: list[str]) -> None:
        subfolders = 0
        for name, path, is_dir, _ in _entries(folder, root, scan.problems):
            shown = _show(folder / name, root)
            if not is_dir:
                scan.problems.append(
                    Problem(shown, f"file outside a run folder (runs are {LAYOUT}); not ingested")
                )
                continue
            subfolders += 1
            here = [*names, name]
            if len(here) == RUN_DEPTH:
                reason = _checked_ids(here)
                if reason is not None:
                    scan.skipped.append(Problem("/".join(here), f"{reason}; run not ingested"))
                    continue
                _scan_run(path, root, here, scan)
            else:
                walk(path, here)
        if subfolders == 0 and names:
            scan.problems.append(
                Problem(_show(folder, root), f"folder holds no run folders (runs are {LAYOUT})")
            )

    walk(root, [])


def _scan_worker(worker: WorkerOutputs, scan: Scan) -> dict[tuple[str, ...], list[FileEntry]]:
    """Worker files by run ids."""
    root = worker.root
    found: dict[tuple[str, ...], list[FileEntry]] = {}
    layout = f"{'' if worker.participant else '<participant>/'}{LAYOUT}<stage>/"

    def stage_files(folder: Path, participant: str, ids: tuple[str, ...], stage: str) -> None:
        known = {
            f"inference_statistics_{stage}.json": Kind.STATISTICS,
            f"inference_predictions_{stage}.txt": Kind.PREDICTIONS,
            f"inference_scores_{stage}.txt": Kind.SCORES,
        }
        for name, path, is_dir, info in _entries(folder, root, scan.problems):
            shown = _show(folder / name, root)
            kind = known.get(name)
            if is_dir or kind is None:
                what = "folder" if is_dir else "file"
                scan.problems.append(Problem(shown, f"unknown {what}; not ingested"))
                continue
            entry = FileEntry(
                name=f"worker/{participant}/{stage}/{name}",
                path=path,
                size=info.st_size,
                mtime_ns=info.st_mtime_ns,
                kind=kind,
                participant=participant,
                stage=stage,
            )
            found.setdefault(ids, []).append(entry)

    def preprocessing(folder: Path, names: list[str]) -> None:
        """``<c>/<p>/preprocessing/``: the worker's catalogue.json; sub-folders are read
        as the runs of an experiment that happens to be called "preprocessing"."""
        participant, ids = (
            (worker.participant, names[:-1]) if worker.participant else (names[0], names[1:-1])
        )
        try:
            validate_id("participant", participant)
            reason = _checked_ids(ids)
        except InvalidIdError as exc:
            reason = str(exc)
        for name, path, is_dir, info in _entries(folder, root, scan.problems):
            shown = _show(folder / name, root)
            if is_dir:
                walk(path, [*names, name])
            elif name != CATALOGUE_FILE:
                scan.problems.append(Problem(shown, "unknown file; not ingested"))
            elif reason is not None:
                scan.problems.append(Problem(shown, f"{reason}; not ingested"))
            else:
                assert participant is not None
                found.setdefault(tuple(ids), []).append(
                    FileEntry(
                        name=f"worker/{participant}/preprocessing/{name}",
                        path=path,
                        size=info.st_size,
                        mtime_ns=info.st_mtime_ns,
                        kind=Kind.CATALOGUE,
                        participant=participant,
                    )
                )

    def walk(folder: Path, names: list[str]) -> None:
        depth = RUN_DEPTH + (0 if worker.participant else 1)
        for name, path, is_dir, _ in _entries(folder, root, scan.problems):
            shown = _show(folder / name, root)
            if is_dir and name == "preprocessing" and len(names) == depth - 2:
                preprocessing(path, [*names, name])
                continue
            if not is_dir:
                scan.problems.append(
                    Problem(shown, f"file outside a stage folder (expected {layout}); not ingested")
                )
                continue
            here = [*names, name]
            if len(here) < depth:
                walk(path, here)
                continue
            if worker.participant is None:
                participant, ids = here[0], tuple(here[1:])
                try:
                    validate_id("participant", participant)
                except InvalidIdError as exc:
                    scan.problems.append(Problem(shown, f"{exc}; not ingested"))
                    continue
            else:
                participant, ids = worker.participant, tuple(here)
            reason = _checked_ids(list(ids))
            if reason is not None:
                scan.problems.append(Problem(shown, f"{reason}; not ingested"))
                continue
            for stage, stage_path, stage_is_dir, _ in _entries(path, root, scan.problems):
                stage_shown = _show(path / stage, root)
                if not stage_is_dir or stage not in STAGES:
                    scan.problems.append(
                        Problem(
                            stage_shown, f"not a stage folder ({', '.join(STAGES)}); not ingested"
                        )
                    )
                    continue
                stage_files(stage_path, participant, ids, stage)

    walk(root, [])
    return found


def _add_catalogue(
    result: Scan, worker: WorkerOutputs, ids: tuple[str, ...], entries: list[FileEntry]
) -> None:
    """A project's catalogue.json joins the runs of the project that ran on it.

    The worker rewrites the file when it loads its data for a run, before training starts, and
    the orchestrator writes a run's output files while and after it trains. So a version of
    the file (its modification time) belongs to a run whose newest output file is not older
    than it; a run whose every output file is older finished before that version existed, and
    keeps the catalogue it was ingested with.
    """
    runs = [run for run in result.runs if run.ids[:2] == ids]
    if not runs:
        for entry in entries:
            result.problems.append(
                Problem(
                    f"{worker.root.name}: {entry.name}",
                    f"data catalogue of project {'/'.join(ids)}, which has no run in OUTPUTS; "
                    "not ingested",
                )
            )
        return
    for entry in entries:
        later = [run for run in runs if entry.mtime_ns <= run_end_ns(run)]
        if not later:
            result.problems.append(
                Problem(
                    f"{worker.root.name}: {entry.name}",
                    f"data catalogue of project {'/'.join(ids)} written after every run of it "
                    "in OUTPUTS ended (it is the data of a later run); not ingested yet",
                )
            )
        for run in later:
            if all(f.name != entry.name for f in run.files):
                run.files.append(entry)


def run_end_ns(run: RunFolder) -> int:
    """When the run's output folder was last written: its newest file's modification time."""
    return max((f.mtime_ns for f in run.files if f.name.startswith("outputs/")), default=0)


def scan(outputs: Path, workers: Sequence[WorkerOutputs] = ()) -> Scan:
    """Scan ``outputs`` (and the workers' output folders) into run folders and problems."""
    root = _root(outputs, "OUTPUTS")
    result = Scan()
    _scan_outputs(root, result)
    by_ids: dict[tuple[str, ...], RunFolder] = {run.ids: run for run in result.runs}
    for worker in workers:
        for ids, entries in _scan_worker(worker, result).items():
            if len(ids) == 2:  # a project's data catalogue: every run of the project
                _add_catalogue(result, worker, ids, entries)
                continue
            run = by_ids.get(ids)
            if run is None:
                participant = entries[0].participant
                result.problems.append(
                    Problem(
                        f"{worker.root.name}: {participant} {'/'.join(ids)}",
                        "worker outputs of a run that has no run folder in OUTPUTS; not ingested",
                    )
                )
                continue
            present = {f.name for f in run.files}
            for entry in entries:
                if entry.name in present:
                    result.problems.append(
                        Problem(
                            f"{worker.root.name}: {entry.name}",
                            "found in two worker output folders; the first one is ingested",
                        )
                    )
                    continue
                present.add(entry.name)
                run.files.append(entry)
    return result
