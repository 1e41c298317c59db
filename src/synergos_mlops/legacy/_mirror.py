"""Keep the server's database in step with a file store that another process writes.

Each pass looks at every experiment and run folder of the file store, reads only what is
new (changed ``meta.yaml``, params or tags; bytes appended to metric files) and writes it
into MLflow's tables, so every MLflow client, MLflow's UI and the Synergos API see it. The
file store itself is only read.

Experiments the original Synergos TTP named ``{collaboration}_>_{project}_>_{experiment}``
become federated experiments (``c/p/e``); their runs become federated runs with participant
child runs, the old metric keys translated (:func:`synergos_mlops.federation.legacy_metric`).
Any other experiment is shown as it is. A run already known by its Synergos run id (for
example from ``synmlops ingest``) is the same run: the file store's values are added to it.
Runs the mirror creates keep the file store's run id and point at the file store's artifact
folder, so large model files are served where they lie.

Everything written is idempotent: a pass after a restart, which reads every file again,
stores nothing twice.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import ExperimentTag
from mlflow.store.tracking.dbmodels.models import SqlParam, SqlRun, SqlTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sqlalchemy import update

from synergos_mlops.errors import SynergosError
from synergos_mlops.federation import (
    ROLE_FEDERATION,
    TAG_ROLE,
    TAG_RUN,
    ExperimentIds,
    InvalidIdError,
    legacy_experiment_ids,
    legacy_metric,
    validate_id,
)
from synergos_mlops.legacy._filestore import (
    ExperimentFolder,
    FileStoreError,
    MetricCursor,
    PassReport,
    StoreExperiment,
    StoreRun,
    experiment_folders,
    read_experiment,
    read_key_files,
    read_run,
    run_folders,
    trusted,
)
from synergos_mlops.storage import reads
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.metrics import append_metrics, write_metrics
from synergos_mlops.storage.runs import ensure_participant_runs, resolution_lock

__all__ = [
    "SOURCE_FILE_STORE",
    "TAG_LEGACY_RUN",
    "TAG_SOURCE",
    "FileStoreMirror",
    "PassReport",
    "legacy_participant_of_artifact",
]

#: On a run the mirror writes: ``file-store``.
TAG_SOURCE = "synergos.source"
#: On a run the mirror writes: ``<experiment folder>/<run folder>`` in the file store.
TAG_LEGACY_RUN = "synergos.legacy.run"
TAG_LEGACY_EXPERIMENT = "synergos.legacy.experiment"
SOURCE_FILE_STORE = "file-store"
_MAX_PARAM = 6000

_LOCAL_PREFIXES = ("local_model_", "local_loss_history_")


def legacy_participant_of_artifact(name: str) -> str | None:
    """``local_model_<p>.pt`` / ``local_loss_history_<p>.json`` -> ``p``; else None."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    for prefix in _LOCAL_PREFIXES:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix) :]
    return None


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _settled(signature: tuple[int, int] | None) -> tuple[int, int] | None:
    """The signature to keep for the next pass: None (read again) while it may still hide a
    change (:func:`~synergos_mlops.legacy._filestore.trusted`)."""
    return None if signature is None else trusted(signature, signature[0])


@dataclass
class _Experiment:
    signature: tuple[int, int] | None
    meta: StoreExperiment
    sql_id: str
    ids: ExperimentIds | None
    relative: str


@dataclass
class _Run:
    experiment_folder: str
    signature: tuple[int, int] | None = None
    meta: StoreRun | None = None
    sql_uuid: str | None = None
    owned: bool = False
    name: str | None = None
    participants: dict[str, str] = field(default_factory=dict)
    cursor: MetricCursor = field(default_factory=MetricCursor)
    params: tuple[Any, ...] | None = ()
    tags: tuple[Any, ...] | None = ()
    artifacts: tuple[int, int] | None = None


@dataclass
class _Pending:
    """Points read in this pass, not written yet."""

    state: _Run
    folder: Path
    replace: MetricBatch
    append: MetricBatch


#: How long, at most, a new run without a name waits for its name tag (seconds).
NAME_WAIT = 10.0
#: Points read before they are written, at most, in one transaction.
_FLUSH_POINTS = 50_000


def _listed(folder: Path) -> list[os.DirEntry[str]]:
    """An experiment's run folders; none when the folder cannot be listed (the experiment's
    own reading says why)."""
    try:
        return list(run_folders(folder))
    except OSError:
        return []


class FileStoreMirror:
    """Mirror the file store at ``root`` into MLflow's SQL store ``store``."""

    def __init__(self, root: Path, store: Any) -> None:
        self.root = root.resolve()
        self.store = store
        self._experiments: dict[str, _Experiment] = {}
        self._runs: dict[tuple[str, str], _Run] = {}
        self.events: deque[str] = deque(maxlen=50)
        self.event_count = 0
        self._pending: list[_Pending] = []
        self._pending_points = 0
        self._problems: dict[str, str] = {}
        self._unnamed: dict[tuple[str, str], float] = {}

    def _event(self, text: str) -> None:
        self.events.append(text)
        self.event_count += 1

    # -- one pass ----------------------------------------------------------------------

    def sync(self, on_progress: Callable[[int, int], None] | None = None) -> PassReport:
        """One pass over the store. ``on_progress(runs_read, runs_found)`` is called once the
        run folders are listed (0 read) and after each run folder is read or skipped; the
        first pass over a large store takes a while, and this says how far it is."""
        started = time.monotonic()
        report = PassReport()
        self._problems = report.problems
        seen: set[tuple[str, str]] = set()
        failed_experiments: set[str] = set()
        listed = [(entry, _listed(entry.path)) for entry in experiment_folders(self.root)]
        found = sum(len(runs) for _, runs in listed)
        read = 0
        if on_progress is not None:
            on_progress(read, found)
        for entry, runs in listed:
            folder = entry.path
            try:
                experiment = self._experiment(entry)
            except (FileStoreError, SynergosError) as exc:
                report.problems[str(folder)] = str(exc)
                failed_experiments.add(entry.relative)
                experiment = None
            if experiment is None:
                read += len(runs)
                if on_progress is not None and runs:
                    on_progress(read, found)
                continue
            report.experiments += 1
            for run_entry in runs:
                key = (entry.relative, run_entry.name)
                seen.add(key)
                try:
                    report.points += self._run(experiment, Path(run_entry.path))
                    report.runs += 1
                except (FileStoreError, SynergosError) as exc:
                    report.problems[run_entry.path] = str(exc)
                read += 1
                if on_progress is not None:
                    on_progress(read, found)
        self._problems = report.problems
        report.points += self._flush()
        for key in [k for k in self._runs if k not in seen and k[0] not in failed_experiments]:
            self._removed(key)
        self._unnamed = {k: v for k, v in self._unnamed.items() if k in seen}
        report.seconds = time.monotonic() - started
        return report

    # -- experiments -------------------------------------------------------------------

    def _experiment(self, entry: ExperimentFolder) -> _Experiment | None:
        """The server's experiment of a file-store experiment; None for the empty Default
        experiment every per-project store has."""
        folder = entry.path
        signature = _signature(folder / "meta.yaml")
        known = self._experiments.get(entry.relative)
        if known is not None and known.signature == signature:
            return known
        meta = read_experiment(folder, self.root)
        if entry.project is not None:
            if meta.folder == "0" and meta.name == "Default":
                return None
            try:
                ids: ExperimentIds | None = ExperimentIds(*entry.project, meta.name)
            except InvalidIdError as exc:
                raise FileStoreError(f"{folder}: {exc}") from None
        else:
            ids = legacy_experiment_ids(meta.name)
        name = ids.name if ids is not None else meta.name
        tags = {**(ids.tags if ids is not None else {}), TAG_LEGACY_EXPERIMENT: entry.relative}
        with resolution_lock(self.store.engine):
            found = self.store.get_experiment_by_name(name)
            if found is None:
                sql_id = str(
                    self.store.create_experiment(
                        name, None, [ExperimentTag(k, v) for k, v in tags.items()]
                    )
                )
            else:
                if found.lifecycle_stage != "active":
                    raise FileStoreError(
                        f"experiment {name!r} is deleted in the server's database; restore it "
                        f"(mlflow experiments restore --experiment-id {found.experiment_id})"
                    )
                sql_id = str(found.experiment_id)
                for tag_key, value in tags.items():
                    if found.tags.get(tag_key) != value:
                        self.store.set_experiment_tag(sql_id, ExperimentTag(tag_key, value))
        experiment = _Experiment(_settled(signature), meta, sql_id, ids, entry.relative)
        self._experiments[entry.relative] = experiment
        return experiment

    # -- runs --------------------------------------------------------------------------

    def _run(self, experiment: _Experiment, folder: Path) -> int:
        key = (experiment.relative, folder.name)
        state = self._runs.get(key)
        if state is None:
            state = _Run(experiment.relative)
        signature = _signature(folder / "meta.yaml")
        meta_changed = state.meta is None or signature != state.signature
        if meta_changed:
            meta = read_run(folder, self.root)
            if state.sql_uuid is None:
                tags = read_key_files(folder / "tags", self.root)[1] or {}
                name = tags.get(MLFLOW_RUN_NAME) or meta.name
                if not name and self._name_may_follow(key, signature):
                    return 0
                self._unnamed.pop(key, None)
                name = name or meta.run_uuid
                self._attach(experiment, state, meta, name, folder)
                state.name = name
            # Read again while it settles: what it says is applied only when it differs
            # (a run deleted in the server stays deleted until meta.yaml says otherwise).
            changed = meta != state.meta
            state.meta, state.signature = meta, _settled(signature)
            self._runs[key] = state
            if changed:
                self._update_run(state, folder)
        assert state.meta is not None and state.sql_uuid is not None
        self._key_values(state, folder)
        if experiment.ids is not None:
            self._discover_participants(experiment, state, folder)
        return self._metrics(experiment, state, folder)

    def _name_may_follow(self, key: tuple[str, str], signature: tuple[int, int] | None) -> bool:
        """Whether a run without a name is young enough that its name is still being written:
        mlflow 1.x writes a run's meta.yaml (name '') first and its ``mlflow.runName`` tag
        last. Such a run waits up to NAME_WAIT seconds, from when this mirror first saw it or
        from its meta.yaml's time, whichever is sooner; then it is shown under its run id."""
        first_seen = self._unnamed.setdefault(key, time.monotonic())
        if time.monotonic() - first_seen >= NAME_WAIT:
            return False
        written = signature[0] / 1e9 if signature is not None else 0.0
        return time.time() - written < NAME_WAIT

    def _attach(
        self, experiment: _Experiment, state: _Run, meta: StoreRun, name: str, folder: Path
    ) -> None:
        """Find or create the server's run for this file-store run."""
        federated = experiment.ids is not None
        if federated:
            try:
                validate_id("run", name)
            except InvalidIdError as exc:
                raise FileStoreError(f"{folder}: {exc}") from None
        with resolution_lock(self.store.engine):
            with self.store.ManagedSessionMaker() as session:
                exists = session.get(SqlRun, meta.run_uuid) is not None
            found = None
            if federated and not exists:
                found = reads.find_federation_run(
                    self.store.ManagedSessionMaker, experiment.sql_id, name
                )
            if found is not None:
                state.sql_uuid, state.owned = found.run_uuid, False
                self._event(f"{folder}: joined the existing federated run {name!r}")
            else:
                if not exists:
                    self._insert_run(experiment, meta, name, folder)
                state.sql_uuid, state.owned = meta.run_uuid, True
        tags = {
            TAG_SOURCE: SOURCE_FILE_STORE,
            TAG_LEGACY_RUN: f"{experiment.relative}/{folder.name}",
        }
        if federated:
            tags.update({TAG_RUN: name, TAG_ROLE: ROLE_FEDERATION})
        self._set_tags(state.sql_uuid, tags)

    def _artifact_uri(self, meta: StoreRun, folder: Path) -> str | None:
        """The file store's artifact folder as this server sees it, when the run's artifact
        URI is that folder wherever the writer had the store mounted (``/mlflow/1/<run>/
        artifacts``); any other location is kept as it is."""
        uri = meta.artifact_uri
        local = folder / "artifacts"
        if not uri:
            return str(local)
        path = uri.removeprefix("file://")
        if path.rstrip("/").endswith(f"/{folder.parent.name}/{folder.name}/artifacts"):
            return str(local)
        return str(uri)

    def _insert_run(self, experiment: _Experiment, meta: StoreRun, name: str, folder: Path) -> None:
        with self.store.ManagedSessionMaker(read_only=False) as session:
            session.add(
                SqlRun(
                    run_uuid=meta.run_uuid,
                    name=name[:250],
                    source_type="LOCAL",
                    source_name="",
                    entry_point_name="",
                    user_id=meta.user_id,
                    status=meta.status,
                    start_time=meta.start_time,
                    end_time=meta.end_time,
                    source_version="",
                    lifecycle_stage=meta.lifecycle_stage,
                    artifact_uri=self._artifact_uri(meta, folder),
                    experiment_id=int(experiment.sql_id),
                )
            )
            session.add(SqlTag(key=MLFLOW_RUN_NAME, value=name[:8000], run_uuid=meta.run_uuid))

    def _update_run(self, state: _Run, folder: Path) -> None:
        """The run's status, times and lifecycle follow meta.yaml (runs the mirror owns)."""
        meta = state.meta
        if not state.owned or meta is None or state.sql_uuid is None:
            return
        values = {
            "status": meta.status,
            "start_time": meta.start_time,
            "end_time": meta.end_time,
            "lifecycle_stage": meta.lifecycle_stage,
            "artifact_uri": self._artifact_uri(meta, folder),
        }
        uuids = [state.sql_uuid, *state.participants.values()]
        with self.store.ManagedSessionMaker(read_only=False) as session:
            session.execute(update(SqlRun).where(SqlRun.run_uuid == state.sql_uuid).values(values))
            children = {k: v for k, v in values.items() if k != "artifact_uri"}
            if len(uuids) > 1:
                session.execute(
                    update(SqlRun).where(SqlRun.run_uuid.in_(uuids[1:])).values(children)
                )

    def _set_tags(self, run_uuid: str, tags: dict[str, str]) -> None:
        with self.store.ManagedSessionMaker(read_only=False) as session:
            for tag_key, value in tags.items():
                session.merge(SqlTag(key=tag_key[:250], value=value[:8000], run_uuid=run_uuid))

    def _key_values(self, state: _Run, folder: Path) -> None:
        assert state.sql_uuid is not None
        param_signature, params = read_key_files(folder / "params", self.root, state.params)
        if params is not None:
            with self.store.ManagedSessionMaker(read_only=False) as session:
                for param_key, value in params.items():
                    session.merge(
                        SqlParam(
                            key=param_key[:250], value=value[:_MAX_PARAM], run_uuid=state.sql_uuid
                        )
                    )
            state.params = param_signature
        tag_signature, tags = read_key_files(folder / "tags", self.root, state.tags)
        if tags is not None:
            kept = {
                k: v
                for k, v in tags.items()
                if not k.startswith("synergos.") and k != MLFLOW_PARENT_RUN_ID
            }
            if not state.owned:
                kept.pop(MLFLOW_RUN_NAME, None)
            self._set_tags(state.sql_uuid, kept)
            state.tags = tag_signature

    def _discover_participants(self, experiment: _Experiment, state: _Run, folder: Path) -> None:
        found: set[str] = set()
        artifacts = folder / "artifacts"
        signature = _signature(artifacts)
        if signature != state.artifacts:
            try:
                names = [entry.name for entry in os.scandir(artifacts) if entry.is_file()]
            except OSError:
                names = []
            found.update(p for p in map(legacy_participant_of_artifact, names) if p)
            state.artifacts = _settled(signature)
        self._ensure_participants(experiment, state, found)

    def _ensure_participants(self, experiment: _Experiment, state: _Run, found: set[str]) -> None:
        new = sorted(p for p in found if p not in state.participants)
        if not new or experiment.ids is None or state.name is None:
            return
        if state.meta is not None and state.meta.lifecycle_stage != "active":
            return
        valid = []
        for participant in new:
            try:
                valid.append(validate_id("participant", participant))
            except InvalidIdError:
                continue
        meta = state.meta
        owned = state.owned and meta is not None
        assert state.sql_uuid is not None
        created = ensure_participant_runs(
            self.store, experiment.sql_id, state.sql_uuid, state.name, valid,
            status=meta.status if owned and meta else "RUNNING",
            start_time=meta.start_time if owned and meta else None,
            end_time=meta.end_time if owned and meta else None,
        )  # fmt: skip
        state.participants.update(created)

    def _metrics(self, experiment: _Experiment, state: _Run, folder: Path) -> int:
        assert state.sql_uuid is not None
        new, problems = state.cursor.read_new(folder / "metrics", self.root)
        for problem in problems:
            self._event(f"skipped {problem}")
        if not new:
            return 0
        replace, append = MetricBatch(), MetricBatch()
        if experiment.ids is not None:
            participants = {
                t.participant for t in map(legacy_metric, new) if t.participant is not None
            }
            self._ensure_participants(experiment, state, participants)
        for metric_key, points in new.items():
            if experiment.ids is None:
                target, run_uuid, batch = metric_key, state.sql_uuid, append
            else:
                translated = legacy_metric(metric_key)
                target = translated.key
                run_uuid = (
                    state.participants[translated.participant]
                    if translated.participant is not None
                    else state.sql_uuid
                )
                translated_key = translated.key != metric_key
                batch = replace if translated_key else append
            for timestamp, value, step in points:
                batch.append(run_uuid, target, step, value, timestamp)
        self._pending.append(_Pending(state, folder, replace, append))
        self._pending_points += len(replace) + len(append)
        if self._pending_points >= _FLUSH_POINTS:
            return self._flush()
        return 0

    def _flush(self) -> int:
        """Write the points read so far: one transaction for all runs, or, when that fails
        (a run deleted meanwhile), run by run; a run whose points cannot be written is read
        again from the start on the next pass."""
        pending, self._pending, self._pending_points = self._pending, [], 0
        if not pending:
            return 0
        try:
            return self._write(pending)
        except Exception:  # noqa: BLE001 - a deleted run, a locked database: try run by run
            pass
        stored = 0
        for item in pending:
            try:
                stored += self._write([item])
            except Exception as exc:  # noqa: BLE001 - reported; the run is read again
                item.state.cursor = MetricCursor()
                reason = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
                self._problems[str(item.folder)] = f"metrics not stored, read again: {reason}"
        return stored

    def _write(self, pending: list[_Pending]) -> int:
        replace, append = MetricBatch(), MetricBatch()
        for item in pending:
            for target, source in ((replace, item.replace), (append, item.append)):
                for row in zip(
                    source.run_ids, source.keys, source.steps, source.values, source.timestamps,
                    strict=True,
                ):  # fmt: skip
                    target.append(*row)
        stored = 0
        if len(replace):
            stored += write_metrics(self.store.engine, replace).stored
        if len(append):
            stored += append_metrics(self.store.engine, append).stored
        return stored

    def _removed(self, key: tuple[str, str]) -> None:
        state = self._runs.pop(key)
        path = self.root / key[0] / key[1]
        if not state.owned or state.sql_uuid is None:
            self._event(f"{path} was removed; the run it joined stays")
            return
        uuids = [state.sql_uuid, *state.participants.values()]
        with self.store.ManagedSessionMaker(read_only=False) as session:
            session.execute(
                update(SqlRun)
                .where(SqlRun.run_uuid.in_(uuids))
                .values(lifecycle_stage="deleted", deleted_time=int(time.time() * 1000))
            )
        self._event(f"{path} was removed; its run is marked deleted")
