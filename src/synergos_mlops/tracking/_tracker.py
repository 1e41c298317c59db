"""FederatedTracker: a federated cycle on MLflow, mapped as docs/design.md says."""

from __future__ import annotations

import atexit
import contextlib
import getpass
import json
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from synergos_mlops.errors import InvalidValueError, ServerUnavailableError
from synergos_mlops.federation import (
    ExperimentIds,
    validate_id,
)
from synergos_mlops.tracking._config import TrackerConfig
from synergos_mlops.tracking._logs import FederatedLogHandler
from synergos_mlops.tracking._run import FederatedRun
from synergos_mlops.tracking._sender import LOGS, Sender
from synergos_mlops.tracking._spool import Spool
from synergos_mlops.tracking._transport import Resolved, Transport, transport_for
from synergos_mlops.validate import (
    as_step,
    check_param_key,
    param_text,
)

if TYPE_CHECKING:
    from synergos_mlops.tracking._study import Study

__all__ = ["GLOBAL", "PARAM_VALUE_LIMIT", "FederatedTracker"]

_T = TypeVar("_T")
_R = TypeVar("_R", bound="FederatedRun")

#: The key of the global (aggregated) model's statistics in ``log_statistics``.
GLOBAL = None
#: MLflow's limit on a param value; longer hyperparameters are truncated (see run()).
PARAM_VALUE_LIMIT = 6000
HYPERPARAMETERS_ARTIFACT = "hyperparameters.json"
_TRUNCATED = f"... [truncated; the whole value is in the artifact {HYPERPARAMETERS_ARTIFACT}]"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return None


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
            whole = {key: param_text(value) for key, value in (hyperparameters or {}).items()}
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
            text = param_text(value)
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
        senders = [(self._sender, self._spool, "metric points, params and tags")]
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
