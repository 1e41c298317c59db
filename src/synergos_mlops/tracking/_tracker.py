"""FederatedTracker and FederatedRun: a federated cycle on MLflow, mapped as docs/design.md says."""

from __future__ import annotations

import atexit
import contextlib
import functools
import getpass
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from synergos_mlops.errors import InvalidIdError, InvalidValueError, ServerUnavailableError
from synergos_mlops.federation import (
    STAGES,
    ExperimentIds,
    epoch_key,
    statistic_points,
    validate_id,
)
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.tracking._config import TrackerConfig
from synergos_mlops.tracking._logs import FederatedLogHandler
from synergos_mlops.tracking._sender import LOGS, Sender
from synergos_mlops.tracking._spool import Spool
from synergos_mlops.tracking._transport import Resolved, Transport, transport_for
from synergos_mlops.tracking._validate import (
    as_step,
    check_param_key,
    metric_items,
    safe_relative_path,
)

if TYPE_CHECKING:
    from synergos_mlops.tracking._study import Study
    from synergos_mlops.tracking._system import SystemMonitor

__all__ = ["GLOBAL", "PARAM_VALUE_LIMIT", "FederatedRun", "FederatedTracker"]

_T = TypeVar("_T")
_R = TypeVar("_R", bound="FederatedRun")

#: The key of the global (aggregated) model's statistics in ``log_statistics``.
GLOBAL = None
#: MLflow's limit on a param value; longer hyperparameters are truncated (see run()).
PARAM_VALUE_LIMIT = 6000
HYPERPARAMETERS_ARTIFACT = "hyperparameters.json"
_TRUNCATED = f"... [truncated; the whole value is in the artifact {HYPERPARAMETERS_ARTIFACT}]"

ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview


def _now_ms() -> int:
    return int(time.time() * 1000)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return None


def _param_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class FederatedTracker:
    """Logs federated cycles onto MLflow: one per orchestrator, shared by its threads.

    ``target`` is a server URL (``http://host:5500``), a store folder (or
    ``sqlite:///<store>/mlflow.db``), or None for ``$MLFLOW_TRACKING_URI``. Metric points are
    sent in large batches by a background thread, through an on-disk spool, so nothing is lost
    while the server is away, even if this process ends (the next tracker for the same
    destination sends what is left). See docs/tracking.md.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | None = None,
        config: TrackerConfig | None = None,
        *,
        transport: Transport | None = None,
        user: str | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self._transport = transport or transport_for(
            target, request_timeout=self.config.request_timeout
        )
        self._spool = Spool(
            self.config.spool_root, self._transport.destination_id, self._transport.tracking_uri
        )
        self._sender = Sender(self._transport, self._spool, self.config)
        self._log_sender: Sender | None = None
        self._log_spool: Spool | None = None
        self._log_lock = threading.Lock()
        if self._log_spool_root.joinpath(self._transport.destination_id).is_dir():
            self._logs()  # an earlier tracker may have left records to send
        self._user = user if user is not None else _user()
        self._closed = False
        self._retries = 0
        self._retries_lock = threading.Lock()
        self._atexit = _make_atexit(self)
        atexit.register(self._atexit)

    @property
    def tracking_uri(self) -> str:
        """A URI MLflow's own client can read the same data from."""
        return self._transport.tracking_uri

    @property
    def retries(self) -> int:
        """Requests that failed for a reason that may pass (no answer, a timeout, a 5xx) and
        were tried again: metric batches, runs, hyperparameters, status and artifacts."""
        with self._retries_lock:
            return self._retries + self._sender.retries

    @property
    def spool_path(self) -> Path:
        """The spool folder of this tracker's destination."""
        return self._spool.path

    @property
    def _log_spool_root(self) -> Path:
        return self.config.spool_root / "logs"

    def _logs(self) -> Sender:
        """The sender of log records, started on first use, with its own spool."""
        with self._log_lock:
            if self._log_sender is None:
                self._log_spool = Spool(
                    self._log_spool_root,
                    self._transport.destination_id,
                    self._transport.tracking_uri,
                )
                self._log_sender = Sender(
                    self._transport, self._log_spool, self.config, LOGS,
                    name="synergos-tracker-logs",
                )  # fmt: skip
            return self._log_sender

    def log_handler(
        self,
        collaboration: str,
        project: str,
        experiment: str,
        run: str,
        participant: str | None = None,
        *,
        level: int = 0,
    ) -> FederatedLogHandler:
        """``run.log_handler(participant)`` for a process that knows only the run's ids and
        does not start or resolve the run: a participant's own process (with ``serve
        --auth``, an account bound to participants may not resolve runs). See docs/logs.md."""
        self._check_open()
        sender = self._logs()
        return FederatedLogHandler(
            collaboration, project, experiment, run, participant, sender.add,
            level=level, skip_thread=sender.thread,
        )  # fmt: skip

    def run(
        self,
        collaboration: str,
        project: str,
        experiment: str,
        run: str,
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        participants: Iterable[str] = (),
        epochs_per_round: int | None = None,
    ) -> FederatedRun:
        """Find or create the federated run and its participants' runs; log hyperparameters.

        Logging the same ids again reuses the experiment, run and participant runs (they are
        marked RUNNING again). Participants not listed get their run on first use.
        Hyperparameter values longer than MLflow's limit (6,000 characters) are truncated in
        the param, marked so, and every hyperparameter is kept whole in the run's artifact
        ``hyperparameters.json``. Raises InvalidIdError / InvalidValueError at once for bad
        ids or hyperparameters, ServerUnavailableError when the destination stays away longer
        than ``config.connect_timeout``.
        """
        self._check_open()
        ids = ExperimentIds(collaboration, project, experiment)
        validate_id("run", run)
        listed = [validate_id("participant", p) for p in participants]
        self._params(hyperparameters or {})  # checked before anything is created

        def resolve() -> tuple[str, Resolved]:
            return run, self._transport.resolve(ids, run, listed, self._user)

        return self._start(ids, resolve, hyperparameters, epochs_per_round, FederatedRun)

    def study(
        self,
        collaboration: str,
        project: str,
        experiment: str,
        name: str,
        search_space: Mapping[str, Any] | str,
        metric: str,
        direction: str = "maximize",
        *,
        extend: bool = False,
    ) -> Study:
        """Define (or find) a hyperparameter-tuning study of one experiment and return it;
        its trials are federated runs (``study.trial(...)``). The definition is kept as an
        experiment tag, so every tracker and server sees the same study. Raises
        InvalidValueError for a search space that is not NNI's ``{name: {"_type", "_value"}}``
        (as a mapping or JSON), a bad metric key or direction; InvalidIdError for a name with
        ``/``; StoreError when the study exists with another definition. ``extend=True`` (a
        tuner's conditional space) takes a study of the same metric and direction whatever its
        space, which then searches the union of both. See docs/studies.md.
        """
        from synergos_mlops.studies import StudyDefinition
        from synergos_mlops.tracking._study import Study

        self._check_open()
        ids = ExperimentIds(collaboration, project, experiment)
        wanted = StudyDefinition.build(name, search_space, metric, direction)
        request = {"name": wanted.name, **wanted.to_json()}
        if extend:
            request["extend"] = True
        stored = self.retry(
            f"define study {wanted.name!r}", lambda: self._transport.define_study(ids, request)
        )
        definition = StudyDefinition.build(
            stored["name"], stored["search_space"], stored["metric"], stored["direction"],
            stored.get("created"),
        )  # fmt: skip
        return Study(self, ids, definition)

    def _start(
        self,
        ids: ExperimentIds,
        resolve: Callable[[], tuple[str, Resolved]],
        hyperparameters: Mapping[str, Any] | None,
        epochs_per_round: int | None,
        make: Callable[..., _R],
    ) -> _R:
        """Resolve a run (``resolve`` answers its run id and MLflow ids), log its
        hyperparameters and return ``make(tracker, ids, run, resolved, ...)``."""
        params, truncated = self._params(hyperparameters or {})
        if epochs_per_round is not None:
            epochs_per_round = as_step("epochs_per_round", epochs_per_round)
            if epochs_per_round < 1:
                raise InvalidValueError("epochs_per_round must be at least 1")
        run, resolved = self.retry("create the run", resolve)
        federated = make(self, ids, run, resolved, dict(hyperparameters or {}), epochs_per_round)
        if params:
            self.retry(
                "log hyperparameters", lambda: self._transport.log_params(resolved.run_id, params)
            )
        if truncated:
            whole = {key: _param_text(value) for key, value in (hyperparameters or {}).items()}
            federated._log_bytes(
                json.dumps(whole, indent=2).encode(), HYPERPARAMETERS_ARTIFACT, None, ""
            )
        return federated

    @staticmethod
    def _params(hyperparameters: Mapping[str, Any]) -> tuple[dict[str, str], bool]:
        if not isinstance(hyperparameters, Mapping):
            raise InvalidValueError("hyperparameters must be a mapping of name to value")
        params: dict[str, str] = {}
        truncated = False
        for key, value in hyperparameters.items():
            text = _param_text(value)
            if len(text) > PARAM_VALUE_LIMIT:
                text = text[: PARAM_VALUE_LIMIT - len(_TRUNCATED)] + _TRUNCATED
                truncated = True
            params[check_param_key(key)] = text
        return params, truncated

    def flush(self, timeout: float | None = None) -> bool:
        """Return once every point logged so far is stored (True), or after ``timeout``
        (default ``config.flush_timeout``) with a warning (False): what is unsent stays in the
        spool and is sent when the destination is back."""
        wait = self.config.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        stored = True
        senders = [(self._sender, self._spool, "metric points")]
        if self._log_sender is not None and self._log_spool is not None:
            senders.append((self._log_sender, self._log_spool, "log records"))
        for sender, spool, noun in senders:
            missing = sender.flush(max(deadline - time.monotonic(), 0.0))
            if missing:
                problem = sender.last_problem or "no answer"
                warnings.warn(
                    f"{missing} {noun} are not stored yet ({problem}); they wait in the "
                    f"spool at {spool.path} and are sent when {self.tracking_uri} is back, "
                    "by this tracker or the next one for the same destination",
                    RuntimeWarning,
                    stacklevel=2,
                )
                stored = False
        return stored

    def close(self, timeout: float | None = None) -> None:
        """Flush (see flush), stop the sender and leave what is unsent in the spool."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            self._sender.close()
            self._spool.own.release()
            if self._log_sender is not None and self._log_spool is not None:
                self._log_sender.close()
                self._log_spool.own.release()
            self._transport.close()
            atexit.unregister(self._atexit)

    def __enter__(self) -> FederatedTracker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Internals shared with FederatedRun ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this FederatedTracker is closed")

    def retry(self, what: str, call: Callable[[], _T]) -> _T:
        """Call, retrying while the destination is away, up to ``config.connect_timeout``."""
        deadline = time.monotonic() + self.config.connect_timeout
        pause = 0.1
        while True:
            try:
                return call()
            except ServerUnavailableError as exc:
                with self._retries_lock:
                    self._retries += 1
                if time.monotonic() + pause > deadline:
                    raise ServerUnavailableError(
                        f"cannot {what}: {exc} (tried for {self.config.connect_timeout:.0f} s)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, self.config.retry_interval)


def _make_atexit(tracker: FederatedTracker) -> Callable[[], None]:
    """At interpreter exit, put what is still in memory into the spool (no waiting)."""
    ref = weakref.ref(tracker)

    def at_exit() -> None:
        found = ref()
        if found is not None and not found._closed:
            with contextlib.suppress(Exception):
                found._sender.persist()
            if found._log_sender is not None:
                with contextlib.suppress(Exception):
                    found._log_sender.persist()

    return at_exit


class FederatedRun:
    """One federated cycle: the parent run and its participants' child runs.

    Made by :meth:`FederatedTracker.run`; use it as a context manager. Leaving the block
    flushes and ends the runs FINISHED, or FAILED when the block raised (everything logged is
    kept). Every method may be called from several threads.
    """

    def __init__(
        self,
        tracker: FederatedTracker,
        ids: ExperimentIds,
        run: str,
        resolved: Resolved,
        hyperparameters: dict[str, Any],
        epochs_per_round: int | None,
    ) -> None:
        self._tracker = tracker
        self.ids = ids
        self.run = run
        self._resolved = resolved
        self._hyperparameters = hyperparameters
        self._epochs_per_round = epochs_per_round
        self._lock = threading.Lock()
        self._ended = False

    # Ids -----------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """MLflow id of the parent run."""
        return self._resolved.run_id

    @property
    def experiment_id(self) -> str:
        return self._resolved.experiment_id

    @property
    def tracking_uri(self) -> str:
        return self._tracker.tracking_uri

    @property
    def participants(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._resolved.participants)

    def participant_run_id(self, participant: str) -> str:
        """MLflow id of a participant's child run (created on first use)."""
        return self._child(participant)[0]

    def monitor(
        self, participant: str, *, interval: float = 1.0, pid: int | None = None
    ) -> SystemMonitor:
        """A :class:`~synergos_mlops.tracking.SystemMonitor` of ``participant``'s hardware,
        sent through this tracker's destination; use it as a context manager around the
        participant's training (see docs/system.md)."""
        from synergos_mlops.tracking._system import SystemMonitor

        validate_id("participant", participant)
        return SystemMonitor(
            collaboration=self.ids.collaboration,
            participant=participant,
            interval=interval,
            pid=pid,
            config=self._tracker.config,
            transport=self._tracker._transport,
        )

    def add_participants(self, participants: Iterable[str]) -> None:
        """Create (or find) the runs of the participants not known yet, all in one request,
        where each participant's first use would take a request of its own. Raises
        InvalidIdError for a bad id before anything is created."""
        wanted = [validate_id("participant", p) for p in participants]
        with self._lock:
            missing = [p for p in dict.fromkeys(wanted) if p not in self._resolved.participants]
        if missing:
            self._resolve_participants(missing)

    def _resolve_participants(self, participants: list[str]) -> None:
        what = (
            f"create the run of participant {participants[0]!r}"
            if len(participants) == 1
            else f"create the runs of {len(participants)} participants"
        )
        resolved = self._tracker.retry(
            what,
            lambda: self._tracker._transport.resolve(
                self.ids, self.run, participants, self._tracker._user
            ),
        )
        if resolved.run_id != self.run_id:
            raise InvalidIdError(f"run {self.run!r} resolved to another MLflow run")
        with self._lock:
            for participant in participants:
                self._resolved.participants[participant] = resolved.participants[participant]
                self._resolved.participant_artifact_uris[participant] = (
                    resolved.participant_artifact_uris[participant]
                )

    def _child(self, participant: str) -> tuple[str, str]:
        with self._lock:
            found = self._resolved.participants.get(participant)
            if found is not None:
                return found, self._resolved.participant_artifact_uris[participant]
        validate_id("participant", participant)
        self._resolve_participants([participant])
        with self._lock:
            return (
                self._resolved.participants[participant],
                self._resolved.participant_artifact_uris[participant],
            )

    def _target(self, participant: str | None) -> tuple[str, str]:
        if participant is None:
            return self._resolved.run_id, self._resolved.artifact_uri
        if not isinstance(participant, str):
            raise InvalidIdError(f"participant id {participant!r} must be a string")
        return self._child(participant)

    # Metrics -------------------------------------------------------------------------------

    def _add(self, run_id: str, items: Sequence[tuple[str, float]], step: int, ts: int) -> None:
        self._tracker._check_open()
        count = len(items)
        batch = MetricBatch(
            [run_id] * count, [key for key, _ in items], [step] * count,
            [value for _, value in items], [ts] * count,
        )  # fmt: skip
        self._tracker._sender.add(batch)

    @staticmethod
    def _timestamp(timestamp: int | None) -> int:
        if timestamp is None:
            return _now_ms()
        stamp = as_step("timestamp", timestamp)
        if stamp < 0:
            raise InvalidValueError(f"timestamp {stamp} must not be negative")
        return stamp

    def log_metrics(
        self,
        metrics: Mapping[str, Any],
        *,
        step: int,
        participant: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Log round-level values at ``step`` (the round): the global value, or a
        participant's local value under the same key. A point logged again at the same
        (run, participant, key, step) replaces the earlier one. ``timestamp`` in ms since
        the epoch (default: now)."""
        items = metric_items(metrics)
        step = as_step("step", step)
        stamp = self._timestamp(timestamp)
        run_id, _ = self._target(participant)
        self._add(run_id, items, step, stamp)

    def log_statistics(
        self,
        statistics: Mapping[str | None, Mapping[str, Any]],
        *,
        stage: str,
        step: int,
        timestamp: int | None = None,
    ) -> None:
        """Log Synergos statistics by participant; the key ``None`` (``GLOBAL``) holds the
        global model's statistics (parent run). A per-class list becomes
        ``{stage}/{name}/class_{i}``, a scalar ``{stage}/{name}``; the class index is never
        the step. Everything is checked before anything is logged."""
        if not isinstance(statistics, Mapping):
            raise InvalidValueError("statistics must map a participant (or None) to statistics")
        step = as_step("step", step)
        stamp = self._timestamp(timestamp)
        prepared = []
        for participant, values in statistics.items():
            if not isinstance(values, Mapping):
                raise InvalidValueError(
                    f"statistics of participant {participant!r} must be a mapping"
                )
            points = dict(statistic_points(stage, values))
            prepared.append((participant, metric_items(points)))
        for participant, items in prepared:
            run_id, _ = self._target(participant)
            self._add(run_id, items, step, stamp)

    def log_epoch_metrics(
        self,
        metrics: Mapping[str, Any],
        *,
        round: int,  # noqa: A002 - the federated domain's word
        epoch: int,
        participant: str | None = None,
        epochs_per_round: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Log epoch-level values under their own keys (``train/loss`` ->
        ``train/epoch/loss``) at step ``round * epochs_per_round + epoch``, so the series
        grows across rounds. ``epochs_per_round``: this argument, else the one given to
        ``tracker.run``, else ``hyperparameters["epochs"]``."""
        per_round = epochs_per_round or self._epochs_per_round
        if per_round is None:
            per_round = self._hyperparameters.get("epochs")
        if per_round is None:
            raise InvalidValueError(
                "epochs per round unknown: pass epochs_per_round or hyperparameters['epochs']"
            )
        per_round = as_step("epochs_per_round", per_round)
        round_ = as_step("round", round)
        epoch_ = as_step("epoch", epoch)
        if per_round < 1 or not 0 <= epoch_ < per_round or round_ < 0:
            raise InvalidValueError(
                f"epoch {epoch_} of round {round_} is outside 0..{per_round - 1} epochs per round"
            )
        items = metric_items({epoch_key(key): value for key, value in metrics.items()})
        stamp = self._timestamp(timestamp)
        run_id, _ = self._target(participant)
        self._add(run_id, items, round_ * per_round + epoch_, stamp)

    def flush(self, timeout: float | None = None) -> bool:
        """See FederatedTracker.flush."""
        return self._tracker.flush(timeout)

    # Logs ----------------------------------------------------------------------------------

    def log_handler(self, participant: str | None = None, *, level: int = 0) -> FederatedLogHandler:
        """A ``logging.Handler`` that keeps records in this run's central logs: the
        orchestrator's (``participant=None``) or one participant's. Records wait in the
        tracker's log spool while the destination is away; ``flush()`` and the end of the
        run wait for them as for metric points. See docs/logs.md."""
        self._tracker._check_open()
        sender = self._tracker._logs()
        return FederatedLogHandler(
            self.ids.collaboration, self.ids.project, self.ids.experiment, self.run,
            participant, sender.add, level=level, skip_thread=sender.thread,
        )  # fmt: skip

    # Data catalogue ------------------------------------------------------------------------

    def log_dataset(
        self,
        participant: str,
        split: str,
        metadata: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
        headers: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    ) -> str:
        """Catalogue ``participant``'s ``split`` (train, evaluate, predict) by its summary
        (the worker's metadata: never the data), as an MLflow dataset input of the
        participant's run; returns the dataset's digest (see docs/catalogue.md)."""
        from synergos_mlops.catalogue import dataset_entry

        self._tracker._check_open()
        entry = dataset_entry(
            self.ids.collaboration, self.ids.project, participant, split, metadata,
            schema=schema, headers=headers,
        )  # fmt: skip
        run_id, _ = self._target(participant)
        transport = self._tracker._transport
        self._tracker.retry(
            f"catalogue the {split} data of participant {participant!r}",
            lambda: transport.log_inputs(run_id, [entry.to_mlflow()]),
        )
        return entry.digest

    # Artifacts -----------------------------------------------------------------------------

    def _upload(self, local: Path, artifact_uri: str, folder: str) -> None:
        transport = self._tracker._transport
        self._tracker.retry(
            f"store artifact {folder}/{local.name}",
            lambda: transport.log_artifact(artifact_uri, local, folder),
        )

    def _log_path(
        self, source: Path, name: str | None, participant: str | None, folder: str
    ) -> None:
        _, artifact_uri = self._target(participant)
        if source.is_dir():
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                relative = file.parent.relative_to(source).as_posix()
                sub = "/".join(x for x in (folder, name or source.name, relative) if x and x != ".")
                self._upload(file, artifact_uri, sub)
            return
        if not source.is_file():
            raise InvalidValueError(f"artifact {source} is not a file or folder")
        if name is None or name == source.name:
            self._upload(source, artifact_uri, folder)
            return
        with tempfile.TemporaryDirectory(prefix="synergos-") as tmp:
            sub, _, base = name.rpartition("/")
            copy = Path(tmp) / base
            shutil.copyfile(source, copy)
            self._upload(copy, artifact_uri, "/".join(x for x in (folder, sub) if x))

    def _log_bytes(self, data: bytes, name: str, participant: str | None, folder: str) -> None:
        _, artifact_uri = self._target(participant)
        sub, _, base = name.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="synergos-") as tmp:
            path = Path(tmp) / base
            path.write_bytes(data)
            self._upload(path, artifact_uri, "/".join(x for x in (folder, sub) if x))

    def _log_source(
        self, source: ModelSource, name: str | None, participant: str | None, folder: str,
        default_name: str,
    ) -> None:  # fmt: skip
        if name is not None:
            name = safe_relative_path("artifact name", name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._log_bytes(bytes(source), name or default_name, participant, folder)
        elif isinstance(source, (str, os.PathLike)):
            self._log_path(Path(source), name, participant, folder)
        else:
            raise InvalidValueError(f"artifact source {source!r} must be a path or bytes")

    def log_model(
        self,
        model: ModelSource,
        participant: str | None = None,
        round: int | None = None,  # noqa: A002
        epoch: int | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Store model weights (a file, a folder or bytes; opaque to us).

        Without ``round``: the final model, ``models/global/`` (parent run) or
        ``models/local/`` (``participant``'s run). With ``round`` (and ``epoch``): a
        checkpoint, ``checkpoints/round_{r}/`` or ``checkpoints/round_{r}/epoch_{e}/``.
        ``name`` defaults to the file's name (``model.pt`` for bytes).
        """
        if round is None:
            if epoch is not None:
                raise InvalidValueError("a checkpoint's epoch needs its round")
            folder = "models/global" if participant is None else "models/local"
        else:
            folder = f"checkpoints/round_{as_step('round', round)}"
            if epoch is not None:
                folder += f"/epoch_{as_step('epoch', epoch)}"
        self._log_source(model, name, participant, folder, "model.pt")

    def log_loss_history(
        self,
        history: Mapping[str, Any] | ModelSource,
        participant: str | None = None,
        *,
        name: str = "loss_history.json",
    ) -> None:
        """Store a loss history (a mapping, written as JSON, or a file) in ``loss_history/``."""
        if isinstance(history, Mapping):
            data = json.dumps(history, indent=2, default=str).encode()
            self._log_source(data, name, participant, "loss_history", name)
        else:
            self._log_source(history, name, participant, "loss_history", name)

    def log_inference(
        self,
        output: ModelSource,
        participant: str,
        *,
        stage: str,
        name: str | None = None,
    ) -> None:
        """Store a participant's inference output in ``inference/{stage}/`` of its run."""
        if stage not in STAGES:
            raise InvalidValueError(f"stage {stage!r} must be one of {', '.join(STAGES)}")
        validate_id("participant", participant)
        self._log_source(output, name, participant, f"inference/{stage}", f"outputs_{stage}")

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        participant: str | None = None,
        artifact_path: str | None = None,
    ) -> None:
        """Store a file or folder in the run (``participant``'s run if given), under
        ``artifact_path`` (relative; ``..`` and absolute paths are refused)."""
        folder = "" if artifact_path is None else safe_relative_path("artifact_path", artifact_path)
        self._log_source(path, None, participant, folder, "")

    # Ending --------------------------------------------------------------------------------

    def end(self, status: str = "FINISHED") -> None:
        """Flush, then end the participants' runs and the parent run with ``status``
        (FINISHED, FAILED or KILLED). A destination away longer than the timeouts leaves the
        points in the spool and the runs RUNNING, with a warning."""
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise InvalidValueError(f"status {status!r} must be FINISHED, FAILED or KILLED")
        if self._ended:
            return
        self._ended = True
        self._tracker.flush()
        end_time = _now_ms()
        transport = self._tracker._transport
        with self._lock:
            run_ids = [*self._resolved.participants.values(), self._resolved.run_id]
        try:
            for run_id in run_ids:
                self._tracker.retry(
                    "end the run", functools.partial(transport.set_status, run_id, status, end_time)
                )
        except ServerUnavailableError as exc:
            warnings.warn(f"run {self.run!r} stays RUNNING: {exc}", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> FederatedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        try:
            self.end("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
        except Exception as problem:  # noqa: BLE001 - never hide the block's own exception
            warnings.warn(
                f"could not end run {self.run!r}: {problem}", RuntimeWarning, stacklevel=2
            )
