"""A Flower strategy wrapper that logs a Flower run as a Synergos federated run.

::

    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg
    from synergos_mlops.integrations.flower import SynergosStrategy

    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy = SynergosStrategy(FedAvg(), tracking_uri="http://localhost:5500",
                                    collaboration="c", project="p", experiment="e",
                                    run_config=context.run_config)
        strategy.start(grid=grid, initial_arrays=arrays, num_rounds=3)

The wrapper takes any Flower Message API strategy (``flwr.serverapp.strategy``: FedAvg,
FedProx, FedAdam, ...) and is used in its place; it delegates every decision to it and only
watches. ``start`` opens a :class:`~synergos_mlops.FederatedTracker` on ``tracking_uri`` (a
server URL or a store folder) and logs, into the federated run ``run`` (default: Flower's run
id):

- hyperparameters: the run config (``run_config``, else what the grid's run holds: under
  ``flwr run`` only the overrides), ``num_rounds``, and the wrapped strategy's settings as
  ``strategy`` (its class) and ``strategy/<attribute>``;
- per server round (the step), each client's train and evaluate ``MetricRecord`` values as
  that participant's ``train/<key>`` and ``evaluate/<key>``; the participant is the client's
  ``partition-id`` when it reports one in its MetricRecord, else Flower's node id. The
  bookkeeping keys (``num-examples``, or the strategy's ``weighted_by_key``, and
  ``partition-id``) are not logged as metrics. A list value becomes ``<key>/<index>``;
- the aggregated train and evaluate records as global ``train/<key>`` and ``evaluate/<key>``,
  and ``evaluate_fn``'s server-side records as global ``evaluate/server/<key>`` (round 0 is
  the initial model);
- ``{train,evaluate}/clients_sampled``, ``.../clients_replied``, ``.../clients_failed`` per
  round, and each failed reply as an ERROR record of the run's central logs (the
  participant's, when known) with Flower's error code and reason;
- ``{train,evaluate}/duration_s`` (messages sent to aggregate done),
  ``evaluate/server/duration_s`` and ``round/duration_s``;
- the final arrays as ``models/global/global_model.npz`` (``numpy.savez``, one array per
  ArrayRecord key), logged as an MLflow logged model of the run and registered as a new
  version of ``synergos-<collaboration>-<project>-<experiment>`` (``register_model=False``
  leaves the registry alone).

The run ends FINISHED, or FAILED when the strategy raised. Logging never stops a federation,
and one refused value never costs another: a key MLflow refuses (say ``top@5``) is sent as the
client named it, and the destination stores the record's other values and counts that one by
reason (a server's ``/health`` ``refused.metrics``, named once in its log); so is a value
that is no number (an int beyond a float): left out here, counted there as ``metric value that
is no number``, and the rounds go on.

Logging stays off the round's path: each hook hands what it saw (the replies, the aggregated
records, the durations) to one background thread of the wrapper and returns. That thread turns
them into points in order and gives them to the tracker, which sends them in batches in its
own background (by default every :data:`SEND_INTERVAL` seconds, a few rounds at a time); the
participants a round brings for the first time get their runs in one request. ``start``
waits for that thread before the model is logged and the run ends.
"""

from __future__ import annotations

import io
import logging
import numbers
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.integrations.models import register_arrays
from synergos_mlops.validate import param_text

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedRun, FederatedTracker, TrackerConfig

__all__ = [
    "BOOKKEEPING_KEYS",
    "PARTITION_KEY",
    "SEND_INTERVAL",
    "SynergosLegacyStrategy",
    "SynergosStrategy",
]

#: The MetricRecord key whose value names the participant.
PARTITION_KEY = "partition-id"
#: Keys of a client's MetricRecord that are Flower's bookkeeping, not metrics.
BOOKKEEPING_KEYS = frozenset({"num-examples", PARTITION_KEY})
MODEL_FILE = "global_model.npz"
#: The tracker's send interval, seconds, when a wrapper is given no ``config``. A round of a
#: federation adds one point to each client's series, and a store's cost of a write grows with
#: the series it touches more than with the points (each series' index page is written once a
#: commit): sent together, a few rounds cost the server about half as much a round as each
#: sent alone. Points reach the server within this time.
SEND_INTERVAL = 5.0
_logger = logging.getLogger(__name__)


def _setting(value: Any) -> Any:
    """A strategy attribute as a hyperparameter value: numbers and text as they are, a
    function by its qualified name, anything else as its text."""
    if value is None or isinstance(value, (str, bool, numbers.Real)):
        return value
    if callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        return f"{module}.{name}" if module else name
    return param_text(value)  # lists, tuples and dicts as JSON


def strategy_settings(strategy: Any) -> dict[str, Any]:
    """``strategy`` (its class) and ``strategy/<attribute>`` for each public attribute."""
    settings: dict[str, Any] = {"strategy": type(strategy).__name__}
    for key, value in sorted(vars(strategy).items()):
        if not key.startswith("_"):
            settings[f"strategy/{key}"] = _setting(value)
    return settings


def _points(prefix: str, record: Mapping[str, Any], skip: frozenset[str]) -> Iterator[tuple]:
    for key, value in record.items():
        if key in skip:
            continue
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield f"{prefix}/{key}/{index}", item
        else:
            yield f"{prefix}/{key}", value


def _metric_records(content: Any) -> list[MetricRecord]:
    # RecordDict.metric_records builds a checked copy on each call; its values are enough.
    return [record for record in content.values() if isinstance(record, MetricRecord)]


class _Names(dict[str, str]):
    """``<stage>/<key>`` of each key, made once."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def __missing__(self, key: str) -> str:
        name = self[key] = f"{self.stage}/{key}"
        return name


class _Reply:
    """What the logging needs of one reply (not its arrays, which may be large)."""

    __slots__ = ("error", "node_id", "records")

    def __init__(self, reply: Message) -> None:
        self.node_id: int = reply.metadata.src_node_id
        self.error = reply.error if reply.has_error() else None
        self.records = [] if self.error is not None else _metric_records(reply.content)


class _Worker:
    """One daemon thread that runs the logging jobs in the order they were handed over.

    A job that raises is reported (through ``report``) and the thread goes on; a thread that
    is gone is started again on the next job."""

    def __init__(self, report: Callable[[str, str], None]) -> None:
        self._report = report
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="synergos-flower-logging", daemon=True
                    )
                    self._thread.start()
        self._jobs.put(job)

    def drain(self) -> None:
        """Return once every job handed over so far has run."""
        if self._thread is None:
            return
        done = threading.Event()
        self.submit(done.set)
        while not done.wait(0.5):
            if self._thread is None or not self._thread.is_alive():
                self.submit(done.set)  # started again: the jobs left run, then this one

    def close(self) -> None:
        self.drain()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one job never stops the others
                self._report(type(exc).__name__, f"logging failed: {exc}")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _participant_of(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return str(int(number)) if number.is_integer() else str(value)


class _RunLogging:
    """What both wrappers keep while a federation runs: its Synergos run, the participant each
    Flower node is, and one background thread that logs in the order values were seen."""

    _target: str | os.PathLike[str] | None  # the tracking URI or store folder

    def _start_logging(self) -> None:
        self.federated_run: FederatedRun | None = None
        self.model_version: str | None = None
        self._participants: dict[int | str, str] = {}
        self._warned: set[str] = set()
        self._pending_warnings: list[str] = []
        self._warnings_lock = threading.Lock()
        self._worker = _Worker(self._note)

    def _use_tracker_config(self, config: TrackerConfig | None) -> None:
        from synergos_mlops.tracking import TrackerConfig

        #: The tracker's settings: ``config``, else every :data:`SEND_INTERVAL` seconds.
        self.tracker_config = config or TrackerConfig(flush_interval=SEND_INTERVAL)

    def _open_tracker(self) -> FederatedTracker:
        from synergos_mlops.tracking import FederatedTracker

        return FederatedTracker(self._target, self.tracker_config)

    def _participant(self, node_id: int | str, records: Iterable[Mapping[str, Any]]) -> str:
        """The client's ``partition-id`` if it reports one (remembered for its node), else
        what that node was last known as, else its node id."""
        for record in records:
            name = _participant_of(record.get(PARTITION_KEY))
            if name is not None:
                self._participants[node_id] = name
                break
        return self._participants.get(node_id, str(node_id))

    def _log(self, values: Mapping[str, Any], step: int, participant: str | None = None) -> None:
        """Hand ``values`` to the logging thread (called on Flower's loop)."""
        if not values:
            return
        stamp = _now_ms()
        values = dict(values)
        self._emit_warnings()
        self._worker.submit(lambda: self._log_now(values, step, participant, stamp))

    def _log_now(
        self, values: Mapping[str, Any], step: int, participant: str | None, stamp: int
    ) -> None:
        run = self.federated_run
        if run is None or not values:
            return
        try:
            run.log_metrics(
                values, step=step, participant=participant, timestamp=stamp, check_keys=False
            )
        except InvalidValueError:
            for key, value in values.items():  # one refused value never costs the others
                try:
                    run.log_metrics(
                        {key: value}, step=step, participant=participant, timestamp=stamp,
                        check_keys=False,
                    )  # fmt: skip
                except InvalidValueError as exc:
                    self._note(key, f"{exc}; left out")
        except Exception as exc:  # noqa: BLE001 - logging never stops the federation
            self._note(type(exc).__name__, f"could not log round {step}: {exc}")

    def _note(self, what: str, message: str) -> None:
        """Keep a warning (once per kind) for Flower's thread to give at its next hook."""
        with self._warnings_lock:
            if what not in self._warned:
                self._warned.add(what)
                self._pending_warnings.append(message)

    def _emit_warnings(self) -> None:
        if not self._pending_warnings:
            return
        with self._warnings_lock:
            pending, self._pending_warnings = self._pending_warnings, []
        for message in pending:
            warnings.warn(f"Synergos: {message}", RuntimeWarning, stacklevel=3)


class SynergosStrategy(_RunLogging, Strategy):
    """Log a Flower run, round by round, as a Synergos federated run (see the module doc).

    ``strategy`` is any ``flwr.serverapp.strategy.Strategy``; every other attribute is read
    from it, so the wrapper stands in for it everywhere. ``run`` defaults to Flower's run id;
    ``run_config`` is the ServerApp's ``context.run_config``. ``config`` is the tracker's
    :class:`~synergos_mlops.TrackerConfig` (default: one that sends every
    :data:`SEND_INTERVAL` seconds; :attr:`tracker_config` is the one in use). After ``start``,
    :attr:`federated_run` is the Synergos run it logged into and :attr:`model_version` the
    registered version (or None).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        tracking_uri: str | os.PathLike[str] | None,
        collaboration: str,
        project: str,
        experiment: str,
        run: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        config: TrackerConfig | None = None,
        register_model: bool = True,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise InvalidValueError(
                f"{type(strategy).__name__} is not a Flower Message API strategy "
                "(flwr.serverapp.strategy.Strategy)"
            )
        from synergos_mlops.federation import ExperimentIds, validate_id

        self.__dict__["strategy"] = strategy
        self._ids = ExperimentIds(collaboration, project, experiment)
        self._run_name = None if run is None else validate_id("run", run)
        self._run_config = None if run_config is None else dict(run_config)
        self._target = tracking_uri
        self._use_tracker_config(config)
        self._register = register_model
        self._tracker: FederatedTracker | None = None
        self._round_start: dict[int, float] = {}
        self._phase_start: dict[tuple[str, int], float] = {}
        self._start_logging()

    def __getattr__(self, name: str) -> Any:
        # Only called for what the wrapper itself lacks: the wrapped strategy's settings.
        if name.startswith("__") or "strategy" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["strategy"], name)

    @property
    def strategy(self) -> Strategy:
        """The wrapped strategy."""
        return self.__dict__["strategy"]  # type: ignore[no-any-return,unused-ignore]

    # Flower's strategy interface, delegated ------------------------------------------------

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        now = time.perf_counter()
        self._round_start[server_round] = now
        self._phase_start["train", server_round] = now
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._log({"train/clients_sampled": len(messages)}, server_round)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self._hand_replies("train", server_round, replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if metrics is not None:
            self._log_record("train", server_round, metrics, None)
        self._log_duration("train", server_round)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._phase_start["evaluate", server_round] = time.perf_counter()
        messages = list(self.strategy.configure_evaluate(server_round, arrays, config, grid))
        self._log({"evaluate/clients_sampled": len(messages)}, server_round)
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        self._hand_replies("evaluate", server_round, replies)
        metrics = self.strategy.aggregate_evaluate(server_round, replies)
        if metrics is not None:
            self._log_record("evaluate", server_round, metrics, None)
        self._log_duration("evaluate", server_round)
        self._log_round_duration(server_round)
        return metrics

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run the wrapped strategy's federation (Flower's own loop) and log it."""
        run_config = self._run_config
        if run_config is None:
            run_config = dict(getattr(grid.run, "override_config", None) or {})
        run_name = self._run_name or str(grid.run.run_id)
        hyperparameters = {**run_config, "num_rounds": num_rounds}
        hyperparameters.update(strategy_settings(self.strategy))
        self._tracker = self._open_tracker()
        try:
            self.federated_run = self._tracker.run(
                self._ids.collaboration,
                self._ids.project,
                self._ids.experiment,
                run_name,
                hyperparameters=hyperparameters,
            )
            with self.federated_run as federated:
                try:
                    result = Strategy.start(
                        self, grid, initial_arrays, num_rounds, timeout, train_config,
                        evaluate_config, None if evaluate_fn is None else self._wrap(evaluate_fn),
                    )  # fmt: skip
                finally:
                    self._worker.drain()
                    self._emit_warnings()
                self._log_model(federated, result.arrays, num_rounds)
            return result
        finally:
            self._worker.close()
            self._emit_warnings()
            self._tracker.close()
            self._tracker = None

    # Logging -------------------------------------------------------------------------------

    def _wrap(
        self, evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None]
    ) -> Callable[[int, ArrayRecord], MetricRecord | None]:
        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            started = time.perf_counter()
            record = evaluate_fn(server_round, arrays)
            values: dict[str, Any] = {"evaluate/server/duration_s": time.perf_counter() - started}
            if record is not None:
                values.update(_points("evaluate/server", record, frozenset()))
            self._log(values, server_round)
            self._log_round_duration(server_round)
            return record

        return evaluate

    def _bookkeeping(self) -> frozenset[str]:
        weight = getattr(self.strategy, "weighted_by_key", None)
        return BOOKKEEPING_KEYS | ({weight} if isinstance(weight, str) else set())

    def _hand_replies(self, stage: str, server_round: int, replies: list[Message]) -> None:
        seen = [_Reply(reply) for reply in replies]
        stamp = _now_ms()
        self._emit_warnings()
        self._worker.submit(lambda: self._log_replies(stage, server_round, seen, stamp))

    def _log_replies(
        self, stage: str, server_round: int, replies: list[_Reply], stamp: int
    ) -> None:
        """On the logging thread: the counts, each failure, and each client's values, the
        runs of participants new to the federation created first, in one request."""
        failed = [reply for reply in replies if reply.error is not None]
        self._log_now(
            {f"{stage}/clients_replied": len(replies) - len(failed),
             f"{stage}/clients_failed": len(failed)},
            server_round, None, stamp,
        )  # fmt: skip
        for reply in failed:
            self._log_failure(stage, server_round, reply)
        named = [
            (self._participant(reply.node_id, reply.records), reply)
            for reply in replies
            if reply.error is None
        ]
        run = self.federated_run
        if run is not None and named:
            try:
                run.add_participants(participant for participant, _ in named)
            except Exception as exc:  # noqa: BLE001 - each is tried again on first use
                self._note("participants", f"could not create the participants' runs: {exc}")
        if run is None or not named:
            return
        skip = self._bookkeeping()
        names = _Names(stage)
        participants: list[str | None] = []
        keys: list[str] = []
        values: list[Any] = []
        for participant, reply in named:  # columns straight from the records, no loop per value
            for record in reply.records:
                data = dict(record.items())
                for key in skip:
                    data.pop(key, None)
                if list in set(map(type, data.values())):
                    points = dict(_points(stage, data, frozenset()))
                    keys.extend(points)
                    values.extend(points.values())
                else:
                    keys.extend(map(names.__getitem__, data))
                    values.extend(data.values())
                participants.extend([participant] * (len(keys) - len(participants)))
        try:
            run.log_metric_columns(
                participants, keys, values, step=server_round, timestamp=stamp, check_keys=False
            )
        except InvalidValueError:  # a key that is no text: the others go one by one
            for participant, reply in named:
                for record in reply.records:
                    points = dict(_points(stage, record, skip))
                    self._log_now(points, server_round, participant, stamp)

    def _log_record(
        self, stage: str, server_round: int, record: Mapping[str, Any], participant: str | None
    ) -> None:
        self._log(dict(_points(stage, record, self._bookkeeping())), server_round, participant)

    def _log_duration(self, stage: str, server_round: int) -> None:
        started = self._phase_start.pop((stage, server_round), None)
        if started is not None:
            self._log({f"{stage}/duration_s": time.perf_counter() - started}, server_round)

    def _log_round_duration(self, server_round: int) -> None:
        # Logged after the clients' evaluation and again after evaluate_fn: the later point
        # replaces the earlier at the same step.
        started = self._round_start.get(server_round)
        if started is not None:
            self._log({"round/duration_s": time.perf_counter() - started}, server_round)

    def _log_failure(self, stage: str, server_round: int, reply: _Reply) -> None:
        node_id = reply.node_id
        participant = self._participant(node_id, ())
        error = reply.error
        run = self.federated_run
        if error is None:
            return
        if run is None:
            return
        try:
            handler = run.log_handler(participant)
            record = logging.LogRecord(
                __name__, logging.ERROR, __file__, 0,
                "round %d %s: participant %s (node %d) failed: %s (code %s)",
                (server_round, stage, participant, node_id, error.reason, error.code), None,
            )  # fmt: skip
            record.__dict__.update(
                round=server_round, stage=stage, node_id=node_id, error_code=error.code,
                error_reason=error.reason,
            )  # fmt: skip
            handler.handle(record)
        except Exception as exc:  # noqa: BLE001 - logging never stops the federation
            self._note("failure", f"could not log a failed reply: {exc}")

    def _log_model(self, run: FederatedRun, arrays: ArrayRecord, num_rounds: int) -> None:
        if not len(arrays):
            return
        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, **dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True)))
        data = buffer.getvalue()
        run.log_model(data, name=MODEL_FILE)
        if self._register:
            run.flush()
            self.model_version = register_arrays(
                run, data, MODEL_FILE, step=num_rounds, model_type="flower-arrayrecord"
            )


class SynergosLegacyStrategy(_RunLogging, LegacyStrategy):
    """The same logging for a strategy of Flower's older API (``flwr.server.strategy``:
    FedAvg, FedProx, ... given to ``ServerApp(strategy=..., config=ServerConfig(...))`` or
    ``start_server``), which Flower 1.42 still ships.

    That API has no hook after the last round, so the wrapper takes ``num_rounds`` (the
    ``ServerConfig``'s): it opens the run at ``initialize_parameters`` and ends it FINISHED
    once the last round's evaluation is done (or skipped), logging the final parameters as
    the global model. :meth:`close` ends it early (FAILED by default) when the federation
    stops before that. Per round: each client's
    ``FitRes.metrics`` as ``train/<key>``, its ``EvaluateRes`` loss and metrics as
    ``evaluate/loss`` and ``evaluate/<key>``; the aggregated ones as global series; the
    strategy's centralized ``evaluate`` as ``evaluate/server/loss`` and
    ``evaluate/server/<key>`` (round 0: the initial parameters); clients sampled, replied
    and failed; each failure as an ERROR record. The participant is the client's
    ``partition-id`` metric, else Flower's client id (``ClientProxy.cid``).
    """

    def __init__(
        self,
        strategy: LegacyStrategy,
        *,
        tracking_uri: str | os.PathLike[str] | None,
        collaboration: str,
        project: str,
        experiment: str,
        num_rounds: int,
        run: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        config: TrackerConfig | None = None,
        register_model: bool = True,
    ) -> None:
        if not isinstance(strategy, LegacyStrategy):
            raise InvalidValueError(
                f"{type(strategy).__name__} is not a strategy of Flower's older API "
                "(flwr.server.strategy.Strategy); wrap Message API strategies in "
                "SynergosStrategy"
            )
        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
            raise InvalidValueError(f"num_rounds must be a whole number ≥ 1, not {num_rounds!r}")
        from synergos_mlops.federation import ExperimentIds, validate_id

        self.strategy = strategy
        self.num_rounds = num_rounds
        self._ids = ExperimentIds(collaboration, project, experiment)
        self._run_name = None if run is None else validate_id("run", run)
        self._run_config = {} if run_config is None else dict(run_config)
        self._target = tracking_uri
        self._use_tracker_config(config)
        self._register = register_model
        self._tracker: FederatedTracker | None = None
        #: The last global parameters the wrapper saw (Flower's ``Parameters``).
        self.parameters: Any = None
        self._start_logging()

    # Flower's older strategy interface, delegated ----------------------------------------

    def initialize_parameters(self, client_manager: Any) -> Any:
        self._open()
        self.parameters = self.strategy.initialize_parameters(client_manager)
        return self.parameters

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.parameters = parameters
        instructions = list(self.strategy.configure_fit(server_round, parameters, client_manager))
        self._log({"train/clients_sampled": len(instructions)}, server_round)
        return instructions

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self._hand_results("train", server_round, list(results), list(failures))
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        if parameters is not None:
            self.parameters = parameters
        if metrics:
            self._log(dict(_points("train", metrics, BOOKKEEPING_KEYS)), server_round)
        return parameters, metrics

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.parameters = parameters
        instructions = list(
            self.strategy.configure_evaluate(server_round, parameters, client_manager)
        )
        self._log({"evaluate/clients_sampled": len(instructions)}, server_round)
        if not instructions and server_round >= self.num_rounds:
            self.close("FINISHED")  # Flower skips the evaluation: the federation is over
        return instructions

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        self._hand_results("evaluate", server_round, list(results), list(failures))
        loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
        values = dict(_points("evaluate", metrics or {}, BOOKKEEPING_KEYS))
        if loss is not None:
            values["evaluate/loss"] = loss
        self._log(values, server_round)
        if server_round >= self.num_rounds:
            self.close("FINISHED")
        return loss, metrics

    def evaluate(self, server_round: int, parameters: Any) -> Any:
        answer = self.strategy.evaluate(server_round, parameters)
        if answer is not None:
            loss, metrics = answer
            values = dict(_points("evaluate/server", metrics or {}, frozenset()))
            if loss is not None:
                values["evaluate/server/loss"] = loss
            self._log(values, server_round)
        return answer

    # The run -------------------------------------------------------------------------------

    def close(self, status: str = "FAILED") -> None:
        """Log the last parameters as the global model (when FINISHED), end the run with
        ``status`` and close the tracker; nothing when no run is open."""
        tracker, run = self._tracker, self.federated_run
        if tracker is None or run is None:
            return
        self._tracker = None
        try:
            self._worker.close()
            self._emit_warnings()
            if status == "FINISHED" and self.parameters is not None:
                self._log_parameters(run)
            run.end(status)
        finally:
            tracker.close()

    def _open(self) -> None:
        if self._tracker is not None:
            return
        hyperparameters = {**self._run_config, "num_rounds": self.num_rounds}
        hyperparameters.update(strategy_settings(self.strategy))
        self._tracker = self._open_tracker()
        self.federated_run = self._tracker.run(
            self._ids.collaboration, self._ids.project, self._ids.experiment,
            self._run_name or time.strftime("flower-%Y%m%d-%H%M%S"),
            hyperparameters=hyperparameters,
        )  # fmt: skip

    def _hand_results(
        self, stage: str, server_round: int, results: list[Any], failures: list[Any]
    ) -> None:
        """Each client's values, and each failure, handed to the logging thread."""
        stamp = _now_ms()
        replied: list[tuple[str, dict[str, Any]]] = []
        for proxy, result in results:
            values = dict(getattr(result, "metrics", None) or {})
            participant = self._participant(str(proxy.cid), [values])
            points = dict(_points(stage, values, BOOKKEEPING_KEYS))
            if stage == "evaluate" and getattr(result, "loss", None) is not None:
                points["evaluate/loss"] = result.loss
            replied.append((participant, points))
        failed: list[tuple[str | None, Any]] = [
            (None, failure) if isinstance(failure, BaseException)
            else (self._participant(str(failure[0].cid), ()), failure[1])
            for failure in failures
        ]  # fmt: skip
        counts = {f"{stage}/clients_replied": len(results), f"{stage}/clients_failed": len(failed)}

        def log() -> None:
            self._log_now(counts, server_round, None, stamp)
            run = self.federated_run
            if run is None:
                return
            if replied:
                run.add_participants(participant for participant, _ in replied)
            for name, points in replied:
                self._log_now(points, server_round, name, stamp)
            for who, failure in failed:
                self._log_legacy_failure(run, stage, server_round, who, failure)

        self._emit_warnings()
        self._worker.submit(log)

    def _log_legacy_failure(
        self, run: FederatedRun, stage: str, server_round: int, participant: str | None,
        failure: Any,
    ) -> None:  # fmt: skip
        status = getattr(failure, "status", None)
        reason = (
            f"{type(failure).__name__}: {failure}" if isinstance(failure, BaseException)
            else f"{getattr(status, 'code', '?')}: {getattr(status, 'message', failure)}"
        )  # fmt: skip
        handler = run.log_handler(participant)
        record = logging.LogRecord(
            __name__, logging.ERROR, __file__, 0, "round %d %s: participant %s failed: %s",
            (server_round, stage, participant or "(unknown)", reason), None,
        )  # fmt: skip
        record.__dict__.update(round=server_round, stage=stage, error_reason=reason)
        handler.handle(record)

    def _log_parameters(self, run: FederatedRun) -> None:
        import numpy as np
        from flwr.common import parameters_to_ndarrays

        arrays = parameters_to_ndarrays(self.parameters)
        if not arrays:
            return
        buffer = io.BytesIO()
        np.savez(buffer, *arrays)
        data = buffer.getvalue()
        run.log_model(data, name=MODEL_FILE)
        if self._register:
            run.flush()
            self.model_version = register_arrays(
                run, data, MODEL_FILE, step=self.num_rounds, model_type="flower-parameters"
            )
