"""Where the tracker's writes go: a server over HTTP, or a store folder on this machine.

Both implement :class:`Transport`, a small protocol, so the buffering client can be tested
with a transport of the test's own and the destination is chosen from one target string.

Errors: a transport raises :class:`~synergos_mlops.errors.ServerUnavailableError` for what may
succeed later (no connection, a timeout, a 5xx answer); the caller retries those. Everything
else (a refused key, an unknown run) is a :class:`~synergos_mlops.errors.SynergosError` that
retrying would not cure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from synergos_mlops.errors import (
    InvalidIdError,
    InvalidValueError,
    ServerUnavailableError,
    StoreError,
    SynergosError,
)
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.tracking.tls import tls_options

__all__ = [
    "FolderTransport",
    "HttpTransport",
    "Resolved",
    "Transport",
    "transport_for",
]

API_PREFIX = "/api/synergos/v1"  # the server's Synergos API (the library never imports it)


class Resolved:
    """MLflow ids of a federated run (the client's view of ``storage.runs.ResolvedRun``)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.experiment_id = str(data["experiment_id"])
        self.run_id = str(data["run_id"])
        self.artifact_uri = str(data["artifact_uri"])
        self.participants: dict[str, str] = dict(data.get("participants", {}))
        self.participant_artifact_uris: dict[str, str] = dict(
            data.get("participant_artifact_uris", {})
        )


@runtime_checkable
class Transport(Protocol):
    """What the tracker needs from a destination."""

    @property
    def tracking_uri(self) -> str:
        """A URI MLflow's own client can use for the same data."""

    @property
    def destination_id(self) -> str:
        """A stable name of the destination; the spool keeps one folder per destination."""

    def resolve(
        self, ids: ExperimentIds, run: str, participants: Sequence[str], user: str | None
    ) -> Resolved: ...

    def write_metrics(self, body: bytes) -> None:
        """Store one wire-form batch (``synergos_mlops.storage.batch``), idempotently."""

    def write_logs(self, body: bytes) -> None:
        """Store one wire-form batch of log records (``synergos_mlops.storage.log_batch``),
        idempotently (by the records' ids)."""

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None: ...

    def write_run_data(
        self, items: Sequence[Sequence[str]], refused: Mapping[str, Mapping[str, int]]
    ) -> None:
        """Store params and tags of runs, ``(run id, "param" | "tag", key, value)`` items in
        order (``synergos_mlops.storage.run_data``), idempotently; what is refused is left
        out and counted, the rest stored. ``refused``: what the sender itself left out, by
        kind and reason, to be counted with it."""

    def set_status(self, run_id: str, status: str, end_time: int) -> None: ...

    def end_runs(self, run_ids: Sequence[str], status: str, end_time: int) -> list[str]:
        """End runs in one request (a federated run and its participants'); answer the ids
        not ended because no active run has them."""

    def log_inputs(self, run_id: str, datasets: Sequence[Mapping[str, Any]]) -> None:
        """Record datasets as the run's inputs (MLflow's ``DatasetInput`` as JSON:
        ``{"dataset": {name, digest, source_type, source, schema, profile}, "tags": [...]}``)."""

    def log_artifact(self, artifact_uri: str, local_path: Path, artifact_path: str) -> None:
        """Store ``local_path`` (a file) as ``<artifact_path>/<its name>`` of the run."""

    def define_study(self, ids: ExperimentIds, definition: Mapping[str, Any]) -> dict[str, Any]:
        """Keep a study's definition (``StudyDefinition`` fields and ``name``); answer the
        stored one."""

    def resolve_trial(self, ids: ExperimentIds, trial: Mapping[str, Any]) -> dict[str, Any]:
        """Number and resolve a study's trial (``storage.studies.resolve_trial``'s arguments:
        study, run, participants, user, queued, outside, request, types, tuner); answer
        ``ResolvedTrial.to_json()``."""

    def close(self) -> None: ...


def _ids_json(ids: ExperimentIds) -> dict[str, str]:
    return {
        "collaboration": ids.collaboration,
        "project": ids.project,
        "experiment": ids.experiment,
    }


_log = logging.getLogger("synergos_mlops.tracking")


def _say_refused(
    transport: Any, refused: Mapping[str, int], detail: str, noun: str = "metric point(s)"
) -> None:
    """Warn once per reason and destination that ``noun`` were not stored (the rest were)."""
    said: set[tuple[str, str]] = transport.__dict__.setdefault("_refusals_said", set())
    for reason, count in refused.items():
        if (noun, reason) not in said:
            said.add((noun, reason))
            _log.warning(
                "%d %s not stored by %s (%s): %s", count, noun,
                transport.tracking_uri, reason, detail,
            )  # fmt: skip


def _say_run_data_refused(
    transport: Any, refused: Mapping[str, Mapping[str, int]], detail: str
) -> None:
    for what, counts in refused.items():
        _say_refused(transport, counts, detail, f"{what.rstrip('s')}(s)")


def _no_route(exc: StoreError, what: str) -> bool:
    """Whether a refusal says the server has no such route: an older server answers 404 for
    a path no route answers (the API's fallback route, or none before it) or 405 (a
    catch-all of ``/runs/...`` that takes no POST). A 404 for a run the caller may not see
    is not one of them."""
    text = str(exc)
    return f"no {what} route" in text or "(405 " in text or "no API route answers" in text


class _MlflowRest:
    """As much of a tracking store as ``storage.run_data.write_run_data`` uses (``get_run``,
    ``log_batch`` of params and tags), through MLflow's REST API on an HTTP transport's
    server. A refusal comes back as MLflow's own (4xx) exception; a server that does not
    answer as ServerUnavailableError, so that the spool file is sent again later."""

    def __init__(self, transport: HttpTransport) -> None:
        self._transport = transport

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            return self._transport._call(method, path, what=what, **kwargs)
        except (InvalidIdError, InvalidValueError, StoreError) as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

    def get_run(self, run_id: str) -> Any:
        from types import SimpleNamespace

        answer = self._call("GET", "/api/2.0/mlflow/runs/get", "run", params={"run_id": run_id})
        info = (answer.get("run") or {}).get("info") or {}
        return SimpleNamespace(info=SimpleNamespace(lifecycle_stage=info.get("lifecycle_stage")))

    def log_batch(self, run_id: str, metrics: Sequence[Any], params: Sequence[Any],
                  tags: Sequence[Any]) -> None:  # fmt: skip
        body = {
            "run_id": run_id,
            "params": [{"key": p.key, "value": p.value} for p in params],
            "tags": [{"key": t.key, "value": t.value} for t in tags],
        }
        self._call("POST", "/api/2.0/mlflow/runs/log-batch", "params and tags", json_body=body)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class HttpTransport:
    """A ``synmlops serve`` server: Synergos routes for runs and metrics, MLflow's REST API for
    params and status, its artifact proxy (``mlflow-artifacts``) for files."""

    def __init__(self, url: str, *, request_timeout: float = 60.0) -> None:
        import requests

        self.url = url.rstrip("/")
        self._timeout = request_timeout
        self._tls = tls_options()  # per request: a session's own would lose to REQUESTS_CA_BUNDLE
        self._local = threading.local()
        self._requests = requests
        self._run_data_route_missing = False  # a server from before runs/data: MLflow's API

    @property
    def tracking_uri(self) -> str:
        return self.url

    @property
    def destination_id(self) -> str:
        return f"http-{_digest(self.url)}"

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._requests.Session()
            # The same credentials MLflow's own client takes (HTTP Basic, serve --auth).
            username = os.environ.get("MLFLOW_TRACKING_USERNAME")
            password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
            if username and password:
                session.auth = (username, password)
            self._local.session = session
        return session

    def _call(
        self, method: str, path: str, *, what: str, json_body: Any = None, **kwargs: Any
    ) -> Any:
        try:
            response = self._session().request(
                method,
                f"{self.url}{path}",
                json=json_body,
                timeout=self._timeout,
                **self._tls,
                **kwargs,
            )
        except self._requests.RequestException as exc:
            raise ServerUnavailableError(
                f"the tracking server at {self.url} did not answer ({what}): {type(exc).__name__}"
            ) from None
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise ServerUnavailableError(
                f"the tracking server at {self.url} answered {response.status_code} ({what})"
            )
        if response.status_code >= 400:
            raise self._refusal(response, what)
        return response.json() if response.content else {}

    def _refusal(self, response: Any, what: str) -> SynergosError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # the Synergos shape
            code, message = str(error.get("code")), str(error.get("message"))
        elif isinstance(body, dict):  # MLflow's shape
            code, message = str(body.get("error_code")), str(body.get("message"))
        else:
            code, message = "", response.text[:300]
        text = f"{what} refused by {self.url} ({response.status_code} {code}): {message}"
        if code == "INVALID_ID":
            return InvalidIdError(message)
        if response.status_code == 404 and code in ("ENDPOINT_NOT_FOUND", "None", ""):
            return StoreError(f"{self.url} is not a Synergos MLOps server (no {what} route)")
        if code in ("INVALID_VALUE", "INVALID_PARAMETER_VALUE", "RUN_NOT_FOUND"):
            return InvalidValueError(text)
        return StoreError(text)

    def resolve(
        self, ids: ExperimentIds, run: str, participants: Sequence[str], user: str | None
    ) -> Resolved:
        body = {
            "collaboration": ids.collaboration,
            "project": ids.project,
            "experiment": ids.experiment,
            "run": run,
            "participants": list(participants),
            "user": user,
        }
        return Resolved(
            self._call("POST", f"{API_PREFIX}/runs/resolve", what="resolve run", json_body=body)
        )

    def write_metrics(self, body: bytes) -> None:
        answer = self._call(
            "POST",
            f"{API_PREFIX}/metrics/bulk",
            what="metric batch",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        refused = answer.get("refused") if isinstance(answer, dict) else None
        if refused:
            _say_refused(self, refused, f"see {self.url}/health")

    def write_logs(self, body: bytes) -> None:
        self._call(
            "POST",
            f"{API_PREFIX}/logs",
            what="log batch",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    def write_samples(self, body: bytes) -> dict[str, Any]:
        """A hardware sample batch (``storage.samples``); the server attaches it by time."""
        answer: dict[str, Any] = self._call(
            "POST",
            f"{API_PREFIX}/system/samples",
            what="hardware samples",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        return answer

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [{"key": key, "value": value} for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit per log-batch request
            self._call(
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                what="hyperparameters",
                json_body={"run_id": run_id, "params": items[start : start + 100]},
            )

    def write_run_data(
        self, items: Sequence[Sequence[str]], refused: Mapping[str, Mapping[str, int]]
    ) -> None:
        body = {
            "items": [dict(zip(("run_id", "kind", "key", "value"), i, strict=True))
                      for i in items],
            "refused": refused,
        }  # fmt: skip
        if not self._run_data_route_missing:
            try:
                answer = self._call(
                    "POST", f"{API_PREFIX}/runs/data", what="params and tags", json_body=body
                )
            except StoreError as exc:
                if not _no_route(exc, "params and tags"):
                    raise
                self._run_data_route_missing = True  # a server from before runs/data
            else:
                stored_not = answer.get("refused") if isinstance(answer, dict) else None
                if stored_not:
                    _say_run_data_refused(self, stored_not, f"see {self.url}/health")
                return
        self._write_run_data_through_mlflow(items, refused)

    def _write_run_data_through_mlflow(
        self, items: Sequence[Sequence[str]], refused: Mapping[str, Mapping[str, int]]
    ) -> None:
        """Params and tags for a server without ``runs/data``: written through MLflow's REST
        API by the server's own rules (``storage.run_data.write_run_data``), a refused item
        left out alone. Such a server cannot count what is not stored in its ``/health``, so
        it is said here, as a store folder's tracker says it."""
        from synergos_mlops.storage.run_data import as_items, write_run_data

        if refused:
            _say_run_data_refused(self, refused, "left out by the sender")
        result = write_run_data(_MlflowRest(self), as_items(list(items)))
        for what, counts in result.refused.items():
            _say_run_data_refused(self, {what: counts}, "; ".join(result.named[what].values()))

    def log_inputs(self, run_id: str, datasets: Sequence[Mapping[str, Any]]) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/runs/log-inputs",
            what="dataset inputs",
            json_body={"run_id": run_id, "datasets": list(datasets)},
        )

    def set_status(self, run_id: str, status: str, end_time: int) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/runs/update",
            what="run status",
            json_body={"run_id": run_id, "status": status, "end_time": end_time},
        )

    def end_runs(self, run_ids: Sequence[str], status: str, end_time: int) -> list[str]:
        body = {"run_ids": list(run_ids), "status": status, "end_time": end_time}
        try:
            answer = self._call("POST", f"{API_PREFIX}/runs/end", what="end runs", json_body=body)
        except StoreError as exc:
            # A server from before runs/end: no such route (its /runs/... catch-all says 405).
            if not _no_route(exc, "end runs"):
                raise
            for run_id in run_ids:
                self.set_status(run_id, status, end_time)
            return []
        return [str(run_id) for run_id in answer.get("missing", [])]

    def log_artifact(self, artifact_uri: str, local_path: Path, artifact_path: str) -> None:
        prefix = "mlflow-artifacts:/"
        if not artifact_uri.startswith(prefix):
            from mlflow import MlflowClient

            run_id = artifact_uri.rstrip("/").split("/")[-2]
            MlflowClient(self.url).log_artifact(run_id, str(local_path), artifact_path)
            return
        target = "/".join(
            part for part in (artifact_uri[len(prefix) :].strip("/"), artifact_path) if part
        )
        target = f"{target}/{local_path.name}"
        with local_path.open("rb") as handle:
            self._call(
                "PUT",
                f"/api/2.0/mlflow-artifacts/artifacts/{quote(target)}",
                what=f"artifact {target}",
                data=handle,
            )

    def define_study(self, ids: ExperimentIds, definition: Mapping[str, Any]) -> dict[str, Any]:
        body = {**_ids_json(ids), **definition}
        # As Python's JSON: a NaN or infinite choice travels as NaN / Infinity both ways.
        answer: dict[str, Any] = self._call(
            "POST", f"{API_PREFIX}/studies/define", what="define study",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        )  # fmt: skip
        return answer

    def resolve_trial(self, ids: ExperimentIds, trial: Mapping[str, Any]) -> dict[str, Any]:
        body = {**_ids_json(ids), **trial}
        answer: dict[str, Any] = self._call(
            "POST", f"{API_PREFIX}/studies/trials/resolve", what="resolve trial", json_body=body
        )
        return answer

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


class FolderTransport:
    """A store folder on this machine (``<store>/mlflow.db`` + ``<store>/artifacts/``),
    written through MLflow's ``SqlAlchemyStore``, so a server started later on the folder
    serves everything, artifacts included."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from synergos_mlops.store import StoreFolder

        self.folder = StoreFolder.at(folder)
        self.folder.check()
        if not self.folder.db_path.exists():
            from synergos_mlops.storage.new_store import create_sqlite_store

            try:
                create_sqlite_store(self.folder.db_path)
            except Exception as exc:
                raise StoreError(f"store {self.folder.path} cannot be created: {exc}") from None
        self.folder.enable_wal()
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # MLflow logs "Creating initial MLflow database tables..." for a new database; the
        # CLI says in its own words that a new store was created.
        schema_log = logging.getLogger("mlflow.store.db.utils")
        level = schema_log.level
        schema_log.setLevel(logging.WARNING)
        try:
            self.store = SqlAlchemyStore(self.folder.backend_store_uri, "mlflow-artifacts:/")
        except Exception as exc:
            raise StoreError(f"store {self.folder.path} cannot be opened: {exc}") from None
        finally:
            schema_log.setLevel(level)

    @property
    def tracking_uri(self) -> str:
        return self.folder.backend_store_uri

    @property
    def destination_id(self) -> str:
        return f"folder-{_digest(str(self.folder.path))}"

    def resolve(
        self, ids: ExperimentIds, run: str, participants: Sequence[str], user: str | None
    ) -> Resolved:
        from synergos_mlops.storage.runs import resolve_run

        return Resolved(resolve_run(self.store, ids, run, participants, user=user).to_json())

    def write_metrics(self, body: bytes) -> None:
        from synergos_mlops.storage.batch import decode_batch
        from synergos_mlops.storage.metrics import RunNotActiveError, write_metrics
        from synergos_mlops.storage.screen import screen_keys

        screened = screen_keys(decode_batch(body))
        if screened.refused:
            _say_refused(self, screened.refused, "; ".join(screened.named.values()))
        try:
            write_metrics(self.store.engine, screened.batch)
        except RunNotActiveError as exc:
            raise InvalidValueError(str(exc)) from None
        except SynergosError:
            raise
        except Exception as exc:  # the database is locked or away: try again later
            raise ServerUnavailableError(f"store {self.folder.path}: {exc}") from None

    def _ensure_log_table(self) -> None:
        """Our tables beside MLflow's (a folder no server has opened yet has none)."""
        if getattr(self, "_log_table_ready", False):
            return
        from synergos_mlops.storage.schema import our_schema, upgrade_ours

        if our_schema(self.store.engine).current is None:
            upgrade_ours(self.store.engine)
        self._log_table_ready = True

    def write_logs(self, body: bytes) -> None:
        from synergos_mlops.storage.log_batch import attach_runs, decode_log_batch
        from synergos_mlops.storage.logs import insert_records

        records = decode_log_batch(body)
        try:
            self._ensure_log_table()
            insert_records(self.store.engine, attach_runs(self.store.engine, records))
        except SynergosError:
            raise
        except Exception as exc:  # the database is locked or away: try again later
            raise ServerUnavailableError(f"store {self.folder.path}: {exc}") from None

    def write_samples(self, body: bytes) -> dict[str, Any]:
        from synergos_mlops.storage.samples import decode_samples
        from synergos_mlops.storage.system import attach_samples

        batch = decode_samples(body)  # InvalidValueError: refused for good
        try:
            return attach_samples(self.store.engine, batch).to_json()
        except SynergosError:
            raise
        except Exception as exc:  # the database is locked or away: try again later
            raise ServerUnavailableError(f"store {self.folder.path}: {exc}") from None

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        items = [Param(key, value) for key, value in params.items()]
        try:
            for start in range(0, len(items), 100):
                self.store.log_batch(run_id, [], items[start : start + 100], [])
        except MlflowException as exc:
            raise InvalidValueError(f"hyperparameters refused: {exc.message}") from None

    def write_run_data(
        self, items: Sequence[Sequence[str]], refused: Mapping[str, Mapping[str, int]]
    ) -> None:
        from synergos_mlops.storage.run_data import as_items, write_run_data

        if refused:
            _say_run_data_refused(self, refused, "left out by the sender")

        checked = as_items(list(items))
        try:
            result = write_run_data(self.store, checked)
        except SynergosError:
            raise
        except Exception as exc:  # the database is locked or away: try again later
            raise ServerUnavailableError(f"store {self.folder.path}: {exc}") from None
        for what, counts in result.refused.items():
            _say_run_data_refused(self, {what: counts}, "; ".join(result.named[what].values()))

    def log_inputs(self, run_id: str, datasets: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        inputs = [
            DatasetInput(
                Dataset(**item["dataset"]),
                [InputTag(tag["key"], tag["value"]) for tag in item.get("tags", [])],
            )
            for item in datasets
        ]
        try:
            self.store.log_inputs(run_id, datasets=inputs)
        except MlflowException as exc:
            raise InvalidValueError(f"dataset inputs refused: {exc.message}") from None

    def set_status(self, run_id: str, status: str, end_time: int) -> None:
        from mlflow.entities import RunStatus

        self.store.update_run_info(run_id, RunStatus.from_string(status), end_time, None)

    def end_runs(self, run_ids: Sequence[str], status: str, end_time: int) -> list[str]:
        from synergos_mlops.storage.runs import end_runs

        try:
            return end_runs(self.store.engine, run_ids, status, end_time)
        except Exception as exc:  # the database is locked or away: try again later
            raise ServerUnavailableError(f"store {self.folder.path}: {exc}") from None

    def log_artifact(self, artifact_uri: str, local_path: Path, artifact_path: str) -> None:
        prefix = "mlflow-artifacts:/"
        if not artifact_uri.startswith(prefix):
            raise StoreError(f"run artifact URI {artifact_uri!r} is not in the store folder")
        relative = artifact_uri[len(prefix) :].strip("/")
        target = self.folder.artifacts_path / relative
        if artifact_path:
            target = target / artifact_path
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, target / local_path.name)

    def define_study(self, ids: ExperimentIds, definition: Mapping[str, Any]) -> dict[str, Any]:
        from synergos_mlops.storage.studies import define_study
        from synergos_mlops.studies import StudyDefinition

        wanted = StudyDefinition.build(
            definition["name"], definition["search_space"], definition["metric"],
            definition["direction"],
        )  # fmt: skip
        stored = define_study(self.store, ids, wanted, extend=bool(definition.get("extend")))
        return {"name": stored.name, **stored.to_json()}

    def resolve_trial(self, ids: ExperimentIds, trial: Mapping[str, Any]) -> dict[str, Any]:
        from synergos_mlops.storage.studies import resolve_trial

        return resolve_trial(
            self.store, ids, trial["study"], trial.get("run"), trial.get("participants", ()),
            user=trial.get("user"), queued=bool(trial.get("queued")),
            outside=trial.get("outside", ()), request=trial.get("request"),
            types=trial.get("types"), tuner=trial.get("tuner"),
        ).to_json()  # fmt: skip

    def close(self) -> None:
        self.store.engine.dispose()


def transport_for(target: str | os.PathLike[str] | None, *, request_timeout: float) -> Transport:
    """``http(s)://...`` -> HttpTransport; ``sqlite:///<store>/mlflow.db``, ``file:`` or a
    folder -> FolderTransport; None -> ``$MLFLOW_TRACKING_URI``."""
    if target is None:
        target = os.environ.get("MLFLOW_TRACKING_URI") or None
        if target is None:
            raise StoreError(
                "no tracking destination: pass a server URL or a store folder, "
                "or set MLFLOW_TRACKING_URI"
            )
    text = os.fspath(target)
    if text.startswith(("http://", "https://")):
        return HttpTransport(text, request_timeout=request_timeout)
    if text.startswith("sqlite:///"):
        database = Path(text[len("sqlite:///") :])
        if database.name != "mlflow.db":
            raise StoreError(f"{text} is not a store folder's database (<store>/mlflow.db)")
        return FolderTransport(database.parent)
    if text.startswith("file:"):
        text = text[len("file:") :].removeprefix("//")
    if "://" in text:
        raise StoreError(f"tracking destination {text!r} is neither a server URL nor a folder")
    return FolderTransport(text)
