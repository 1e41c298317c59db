"""``synmlops lineage export``: a federated run's lineage as OpenLineage run events.

The lineage (``GET /api/synergos/v1/lineage/runs/...``, or the same reader over a store
folder) becomes JSON lines of OpenLineage ``RunEvent``s built with ``openlineage-python``:

- the federated run: job ``<project>/<experiment>`` in namespace ``synergos://<collaboration>``,
  a START event at its start and a COMPLETE (FAIL, ABORT) event at its end, whose inputs are
  every participant's datasets and outputs its logged models and registered model versions;
- each participant run: job ``<project>/<experiment>/<participant>``, a START event at its start
  and its end event (COMPLETE, FAIL, ABORT) once it ended, under the same run id, with its own
  datasets as inputs and a ``parent`` facet naming the federated run.

Events come in the order a lineage server expects them: every START (the federated run's
first) before any end, the federated run's end last; a run still running has its START only.

A dataset is named ``<project>/<participant>/<split>@<digest>`` in namespace
``synergos://<collaboration>``, with its columns as a ``schema`` facet when the catalogue has
them; models are ``models:/<id>`` and ``models:/<name>/<version>`` in namespace ``mlflow``.
OpenLineage run ids are UUIDs: MLflow's run ids (32 hex digits) are one already.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from synergos_mlops import __version__
from synergos_mlops.errors import ServerUnavailableError, StoreError, SynergosError
from synergos_mlops.federation import ExperimentIds, validate_id

__all__ = ["export_lineage", "fetch_lineage", "openlineage_events"]

API_PREFIX = "/api/synergos/v1"  # the server's; kept here so the client never imports it
PRODUCER = f"https://github.com/aimakerspace/synergos_mlops/tree/{__version__}"
_END_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "ABORT"}


def fetch_lineage(target: str, ids: ExperimentIds, run: str) -> dict[str, Any]:
    """The lineage JSON of a run, from a server URL or read from a store folder."""
    validate_id("run", run)
    parts = (ids.collaboration, ids.project, ids.experiment, run)
    if target.startswith(("http://", "https://")):
        import requests

        from synergos_mlops.tracking.tls import tls_options

        url = f"{target.rstrip('/')}{API_PREFIX}/lineage/runs/" + "/".join(
            quote(p, safe="") for p in parts
        )
        session = requests.Session()
        user, password = (
            os.environ.get("MLFLOW_TRACKING_USERNAME"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )
        if user and password:
            session.auth = (user, password)
        try:
            response = session.get(url, timeout=60, **tls_options())
        except requests.RequestException as exc:
            raise ServerUnavailableError(
                f"the tracking server at {target} did not answer ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise SynergosError(
                f"lineage of run {run!r} refused ({response.status_code}): {message}"
            )
        answer: dict[str, Any] = response.json()
        return answer
    from synergos_mlops.store import StoreFolder
    from synergos_mlops.views.catalogue import run_lineage
    from synergos_mlops.views.federated_runs import Backend, NotFoundError, resolve_run

    folder = StoreFolder.at(target.removeprefix("sqlite:///").removesuffix("/mlflow.db"))
    backend = Backend.of_store_folder(folder.path)
    try:
        found = resolve_run(backend, *parts)
    except NotFoundError as exc:
        raise StoreError(str(exc)) from None
    return run_lineage(backend, found, API_PREFIX)


def _run_uuid(mlflow_run_id: str) -> str:
    try:
        return str(uuid.UUID(mlflow_run_id))
    except ValueError:  # not MLflow's usual 32 hex digits: a stable UUID of it
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlflow-run:{mlflow_run_id}"))


def openlineage_events(lineage: dict[str, Any]) -> list[Any]:
    """OpenLineage RunEvents of a run's lineage (see the module's docstring)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import parent_run, schema_dataset

    head = lineage["run"]
    namespace = f"synergos://{head['collaboration']}"
    job_name = f"{head['project']}/{head['experiment']}"
    run_id = _run_uuid(head["mlflow_run_id"])

    def dataset(entry: dict[str, Any]) -> Any:
        name = f"{head['project']}/{entry['participant']}/{entry['split']}@{entry['digest']}"
        facets: dict[str, Any] = {}
        columns = entry.get("columns") or []
        if columns:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=c["name"], type=c["type"])
                    for c in columns
                ]
            )
        return InputDataset(namespace=namespace, name=name, facets=facets)

    outputs = [OutputDataset(namespace="mlflow", name=f"models:/{m['model_id']}")
               for m in lineage.get("models", [])]  # fmt: skip
    outputs += [
        OutputDataset(namespace="mlflow", name=f"models:/{v['name']}/{v['version']}")
        for v in lineage.get("model_versions", [])
    ]
    inputs = [dataset(d) for d in lineage.get("datasets", [])]
    start = head.get("start_time") or head.get("end_time")
    federated = Job(namespace=namespace, name=job_name)
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=run_id), job=parent_run.Job(namespace=namespace, name=job_name)
    )
    starts: list[Any] = []
    ends: list[Any] = []
    if start:
        starts.append(RunEvent(
            eventType=RunState.START, eventTime=start, producer=PRODUCER,
            run=Run(runId=run_id), job=federated, inputs=inputs, outputs=[],
        ))  # fmt: skip
    for participant in lineage.get("participants", []):
        # Every participant run gets its START, then its end (COMPLETE, FAIL, ABORT) once it
        # ended, under one run id: OpenLineage pairs the two by it.
        own = [dataset(d) for d in lineage.get("datasets", [])
               if d["mlflow_run_id"] == participant["mlflow_run_id"]]  # fmt: skip
        child_run = Run(runId=_run_uuid(participant["mlflow_run_id"]), facets={"parent": parent})
        child_job = Job(namespace=namespace, name=f"{job_name}/{participant['id']}")
        began = participant.get("start_time") or start or participant.get("end_time")
        if began:
            starts.append(RunEvent(
                eventType=RunState.START, eventTime=began, producer=PRODUCER, run=child_run,
                job=child_job, inputs=own, outputs=[],
            ))  # fmt: skip
        state = _END_STATES.get(str(participant.get("status")))
        if state is not None and began:
            ends.append(RunEvent(
                eventType=RunState(state), eventTime=participant.get("end_time") or began,
                producer=PRODUCER, run=child_run, job=child_job, inputs=own, outputs=[],
            ))  # fmt: skip
    state = _END_STATES.get(str(head.get("status")))
    if state is not None and start:
        ends.append(RunEvent(
            eventType=RunState(state), eventTime=head.get("end_time") or start, producer=PRODUCER,
            run=Run(runId=run_id), job=federated, inputs=inputs, outputs=outputs,
        ))  # fmt: skip
    events = [*starts, *ends]
    return events


def export_lineage(target: str, ids: ExperimentIds, run: str, output: Path) -> int:
    """Write the run's OpenLineage events to ``output`` as JSON lines (the file appears only
    once complete); return how many."""
    from openlineage.client.serde import Serde

    events = openlineage_events(fetch_lineage(target, ids, run))
    output = output.expanduser()
    if output.is_dir():
        raise SynergosError(f"output {output} is a folder; name a file")
    if not output.parent.is_dir():
        raise SynergosError(f"output folder {output.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for event in events:
                out.write(Serde.to_json(event) + "\n")
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(events)
