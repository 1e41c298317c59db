"""A federated run as the tracker hands it out: the parent run and its participants' child
runs, logged to through the tracker's transport and sender."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from synergos_mlops.errors import InvalidIdError, InvalidValueError, ServerUnavailableError
from synergos_mlops.federation import (
    STAGES,
    ExperimentIds,
    epoch_key,
    statistic_points,
    validate_id,
)
from synergos_mlops.storage.batch import MAX_NAMED_CHARS, MAX_REASON_CHARS, MetricBatch
from synergos_mlops.storage.screen import VALUE_NOT_NUMBER
from synergos_mlops.tracking._logs import FederatedLogHandler
from synergos_mlops.tracking._sender import end_body, run_data_body
from synergos_mlops.tracking._transport import Resolved
from synergos_mlops.validate import (
    as_step,
    as_value,
    check_metric_key,
    metric_items,
    metric_values,
    param_text,
    safe_relative_path,
)

if TYPE_CHECKING:
    from synergos_mlops.tracking._system import SystemMonitor
    from synergos_mlops.tracking._tracker import FederatedTracker

__all__ = ["TEXT_PATH_REFUSED", "TEXT_WITHOUT_PATH", "FederatedRun", "ModelSource"]

ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview


#: Reasons a framework adapter counts a client's text file as not kept (``count_left_out``).
TEXT_WITHOUT_PATH = "text without an artifact path"
TEXT_PATH_REFUSED = "text path refused (absolute or ..)"
#: Params or tags per spool file (a request): well within the server's bound per request.
_RUN_DATA_PART = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


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

    def _add(
        self, run_id: str, items: Sequence[tuple[str, float]], step: int, ts: int,
        left_out: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self._tracker._check_open()
        count = len(items)
        batch = MetricBatch(
            [run_id] * count, [key for key, _ in items], [step] * count,
            [value for _, value in items], [ts] * count,
        )  # fmt: skip
        _count_left_out(batch, left_out)
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
        check_keys: bool = True,
    ) -> None:
        """Log round-level values at ``step`` (the round): the global value, or a
        participant's local value under the same key. A point logged again at the same
        (run, participant, key, step) replaces the earlier one. ``timestamp`` in ms since
        the epoch (default: now). ``check_keys=False`` is for keys that come from elsewhere
        (a framework's clients): they are sent as they are, and the destination stores the
        points of the keys MLflow accepts and counts the others by reason (a server's
        ``/health``) instead of this call raising InvalidValueError; a value that is no number
        is left out and counted there too (``metric value that is no number``)."""
        left_out: list[str] = []
        if check_keys:
            items = metric_items(metrics)
        else:
            items, left_out = metric_values(metrics)
        step = as_step("step", step)
        stamp = self._timestamp(timestamp)
        run_id, _ = self._target(participant)
        self._add(run_id, items, step, stamp, left_out)

    def log_metric_columns(
        self,
        participants: Sequence[str | None],
        keys: Sequence[str],
        values: Sequence[Any],
        *,
        step: int,
        timestamp: int | None = None,
        check_keys: bool = True,
    ) -> None:
        """Log many points at one ``step`` in one call, as columns with one entry per point:
        the participant (None: the global value), the key, the value. For a round's replies
        of many participants: no mapping per participant, each distinct participant and key
        checked once. Raises InvalidValueError (nothing logged) as ``log_metrics`` would, for
        any point; ``check_keys=False`` as there (a value that is no number is left out and
        counted by the destination)."""
        count = len(keys)
        if len(participants) != count or len(values) != count:
            raise InvalidValueError(
                f"metric columns differ in length: {len(participants)} participants, "
                f"{count} keys, {len(values)} values"
            )
        step = as_step("step", step)
        stamp = self._timestamp(timestamp)
        for key in set(keys):
            if check_keys:
                check_metric_key(key)
            elif not isinstance(key, str):
                raise InvalidValueError(f"metric key {key!r} must be a string")
        floats: list[float] | None = None
        if set(map(type, values)) <= {float, int}:  # the usual case, without a loop in Python
            with contextlib.suppress(OverflowError):
                floats = list(map(float, values))
        left_out: list[str] = []
        if floats is None:
            if check_keys:
                floats = [as_value(key, value) for key, value in zip(keys, values, strict=True)]
            else:
                participants, keys, floats, left_out = _numbers_only(participants, keys, values)
                count = len(keys)
        run_of = {participant: self._target(participant)[0] for participant in set(participants)}
        self._tracker._check_open()
        batch = MetricBatch(
            list(map(run_of.__getitem__, participants)), list(keys), [step] * count, floats,
            [stamp] * count,
        )  # fmt: skip
        _count_left_out(batch, left_out)
        self._tracker._sender.add(batch)

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

    def log_params(self, params: Mapping[str, Any], participant: str | None = None) -> None:
        """Log params onto the federated run (``participant=None``) or a participant's run:
        text (lists and dicts as JSON), spooled and sent in order with the points, so a
        destination that is away loses none. The destination stores what MLflow accepts and
        counts the rest by reason (a server's ``/health``, ``params``): a param logged again
        with another value, a name or value MLflow refuses. For values from elsewhere (a
        framework's clients); hyperparameters known at the start go to ``tracker.run``."""
        self._log_run_data("param", params, participant)

    def set_tags(self, tags: Mapping[str, Any], participant: str | None = None) -> None:
        """Set tags on the federated run or a participant's run, as :meth:`log_params` logs
        params; tags named ``synergos.*`` or ``mlflow.*`` are refused and counted (``tags``):
        they hold the federation's structure."""
        self._log_run_data("tag", tags, participant)

    def count_left_out(self, what: str, reason: str, count: int = 1) -> None:
        """Have the destination count ``count`` items of ``what`` that the caller could not
        log (a server's ``/health``, ``refused.<what>``), sent in order with the points; for
        a framework adapter that refuses what a client sent (``what``: ``texts``)."""
        from synergos_mlops.storage.run_data import SENDER_REFUSALS

        if what not in SENDER_REFUSALS:
            raise InvalidValueError(f"{what!r} is not one of {', '.join(SENDER_REFUSALS)}")
        if not reason or len(reason) > MAX_REASON_CHARS or count < 1:
            raise InvalidValueError("a reason of 1 to 200 characters and a count of 1 or more")
        self._tracker._check_open()
        self._tracker._sender.defer(run_data_body([], {what: {reason: count}}))

    def _log_run_data(self, kind: str, values: Mapping[str, Any], participant: str | None) -> None:
        from synergos_mlops.storage.run_data import MAX_ITEM_CHARS

        if not isinstance(values, Mapping):
            raise InvalidValueError(f"{kind}s must be a mapping of name to value")
        texts: dict[str, str] = {}
        for key, value in values.items():
            if not isinstance(key, str):
                raise InvalidValueError(f"{kind} name {key!r} must be a string")
            texts[key] = param_text(value)
            if max(len(key), len(texts[key])) > MAX_ITEM_CHARS:
                raise InvalidValueError(
                    f"{kind} {key[:60]!r}: a name or value beyond {MAX_ITEM_CHARS:,} characters"
                )
        if not texts:
            return
        run_id, _ = self._target(participant)
        self._tracker._check_open()
        items = [(run_id, kind, key, text) for key, text in texts.items()]
        for start in range(0, len(items), _RUN_DATA_PART):
            part = items[start : start + _RUN_DATA_PART]
            self._tracker._sender.defer(run_data_body(part), len(part))

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

    def log_text(self, text: str, artifact_file: str, participant: str | None = None) -> None:
        """Store ``text`` (UTF-8) as the file ``artifact_file`` of the run (``participant``'s
        run if given), a relative path such as ``notes/round_1.txt``, as MLflow's
        ``log_text`` does (``..`` and absolute paths are refused)."""
        if not isinstance(text, str):
            raise InvalidValueError(f"text must be a string, not {type(text).__name__}")
        name = safe_relative_path("artifact_file", artifact_file)
        self._log_bytes(text.encode("utf-8"), name, participant, "")

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
            if hasattr(transport, "end_runs"):  # one request for the run and its participants
                missing = self._tracker.retry(
                    "end the run", functools.partial(transport.end_runs, run_ids, status, end_time)
                )
                if missing:
                    warnings.warn(
                        f"run {self.run!r}: {len(missing)} of its runs no longer exist "
                        f"(deleted?) and were not ended: {', '.join(missing[:5])}",
                        RuntimeWarning, stacklevel=2,
                    )  # fmt: skip
                return
            for run_id in run_ids:  # a transport of one's own without end_runs
                self._tracker.retry(
                    "end the run", functools.partial(transport.set_status, run_id, status, end_time)
                )
        except ServerUnavailableError as exc:
            # The end waits in the spool behind the run's points: sent when the destination
            # is back, by this tracker or the next one started on this spool.
            self._tracker._sender.defer(end_body(run_ids, status, end_time))
            warnings.warn(
                f"run {self.run!r} stays RUNNING until the destination is back ({exc}); its "
                "end waits in the spool with its points", RuntimeWarning, stacklevel=2,
            )  # fmt: skip

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


def _numbers_only(
    participants: Sequence[str | None], keys: Sequence[str], values: Sequence[Any]
) -> tuple[list[str | None], list[str], list[float], list[str]]:
    """The columns without the points whose value is no number, and those refusals' words."""
    kept_participants: list[str | None] = []
    kept_keys: list[str] = []
    floats: list[float] = []
    left_out: list[str] = []
    for participant, key, value in zip(participants, keys, values, strict=True):
        try:
            floats.append(as_value(key, value))
        except InvalidValueError as exc:
            left_out.append(str(exc))
            continue
        kept_participants.append(participant)
        kept_keys.append(key)
    return kept_participants, kept_keys, floats, left_out


def _count_left_out(batch: MetricBatch, left_out: Sequence[str]) -> None:
    """Put the values left out on ``batch``, for its destination to count by reason."""
    if left_out:
        words = left_out[0][:MAX_NAMED_CHARS]
        batch.count_refused({VALUE_NOT_NUMBER: len(left_out)}, {VALUE_NOT_NUMBER: words})
