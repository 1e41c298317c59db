"""Data catalogue and lineage in the Synergos API (see docs/catalogue.md).

``GET /catalogue``, ``GET /catalogue/{c}/{participant}/{digest}``, ``GET {run}/datasets``
(datasets and drift), ``GET /lineage/runs/{c}/{p}/{e}/{r}``, ``GET /lineage/models/{name}/
{version}``, ``GET /lineage/datasets/{c}/{participant}/{digest}``. Included ahead of
``server.routes.runs``, whose ``/runs/...`` catch-all would answer ``{run}/datasets`` first.

With authentication on, an account sees datasets of experiments it may read, and an account
bound to participants only its own participants' datasets and profiles; the lineage of a run
shows the run, its models and versions, and the datasets of the participants it sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request

from synergos_mlops.server.auth.viewer import current_viewer, visible_run
from synergos_mlops.server.http import (
    API_PREFIX,
    ERRORS,
    RUN,
    Collaboration,
    Experiment,
    Project,
    RunId,
    answer,
)
from synergos_mlops.views.federated_runs import Backend, NotFoundError, resolve_run

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["synergos"])
T = TypeVar("T")

ParticipantId = Annotated[str, Path(description="Participant id")]
Digest = Annotated[str, Path(description="The dataset's digest")]


def _sees() -> Callable[[str, str], bool]:
    viewer = current_viewer()
    if viewer is None:
        return lambda _c, _p: True
    return viewer.sees_participant


def _readable() -> Callable[[str], bool]:
    viewer = current_viewer()
    if viewer is None:
        return lambda _e: True
    return viewer.can_read


def _checked(collaboration: str, participant: str, digest: str) -> Backend:
    """The server's stores, once the ids and the digest are checked as every other route
    checks ids: malformed input is a 400 naming it, not a lookup that finds nothing."""
    from synergos_mlops.federation import validate_id

    validate_id("collaboration", collaboration)
    validate_id("participant", participant)
    validate_id("dataset digest", digest)
    return Backend.of_server()


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + API_PREFIX


@router.get("/catalogue", responses=ERRORS)
def catalogue(request: Request) -> dict[str, Any]:
    """Every dataset, by collaboration → participant → split: kind, row count, columns and
    types, digest, and the first and last run that used it."""
    from synergos_mlops.views import catalogue as views

    return answer(
        lambda: views.catalogue(Backend.of_server(), _sees(), _readable(), _root(request))
    )


@router.get("/catalogue/{collaboration}/{participant}/{digest}", responses=ERRORS)
def dataset_profile(
    request: Request, collaboration: Collaboration, participant: ParticipantId, digest: Digest
) -> dict[str, Any]:
    """One dataset: source, schema, profile (the participant's summary) and the runs using it."""
    from synergos_mlops.views import catalogue as views

    return _datasetanswer(views.dataset_profile, request, collaboration, participant, digest)


@router.get(f"{RUN}/datasets", responses=ERRORS)
def run_datasets(
    request: Request, collaboration: Collaboration, project: Project, experiment: Experiment,
    run: RunId,
) -> dict[str, Any]:  # fmt: skip
    """The datasets of the run's participants, and drift: a participant whose dataset differs
    from the project's previous or next run, with the columns that changed."""
    from synergos_mlops.views import catalogue as views

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        return views.run_datasets(backend, found, _root(request))

    return answer(work)


@router.get("/lineage/runs/{collaboration}/{project}/{experiment}/{run}", responses=ERRORS)
def run_lineage(
    request: Request, collaboration: Collaboration, project: Project, experiment: Experiment,
    run: RunId,
) -> dict[str, Any]:  # fmt: skip
    """Datasets → participant runs → the federated run → logged models → registered model
    versions, as lists and as a graph (nodes, edges)."""
    from synergos_mlops.views import catalogue as views

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        return views.run_lineage(backend, found, _root(request))

    return answer(work)


@router.get("/lineage/models/{name}/{version}", responses=ERRORS)
def model_lineage(
    request: Request,
    name: Annotated[str, Path(description="Registered model name")],
    version: Annotated[int, Path(description="Model version", ge=1, le=2_147_483_647)],
) -> dict[str, Any]:
    """Which data trained this model version: the lineage of the run it came from."""
    from synergos_mlops.views import catalogue as views

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        described, run_uuid = views.model_version_source(backend, name, version)
        placed = views.federated_run_of(backend, run_uuid)
        if placed is None:
            raise NotFoundError(
                f"version {version} of model {name!r} comes from run {run_uuid!r}, "
                "which is not a federated run"
            )
        experiment, run_id = placed
        found = visible_run(
            resolve_run(backend, experiment.collaboration, experiment.project,
                        experiment.experiment, run_id)
        )  # fmt: skip
        if views.version_left_out(backend, found, described):  # another participant's model
            raise NotFoundError(f"model {name!r} has no version {version}")
        return views.model_lineage(backend, found, described, _root(request))

    return answer(work)


@router.get("/lineage/datasets/{collaboration}/{participant}/{digest}", responses=ERRORS)
def dataset_lineage(
    request: Request, collaboration: Collaboration, participant: ParticipantId, digest: Digest
) -> dict[str, Any]:
    """Which runs, logged models and model versions a participant's dataset reached."""
    from synergos_mlops.views import catalogue as views

    return _datasetanswer(views.dataset_lineage, request, collaboration, participant, digest)


def _datasetanswer(
    view: Callable[..., dict[str, Any]],
    request: Request,
    collaboration: str,
    participant: str,
    digest: str,
) -> dict[str, Any]:
    """One participant's dataset answered by ``view`` (its profile, or its lineage), for the
    accounts that may see that participant."""
    return answer(
        lambda: view(
            _checked(collaboration, participant, digest),
            collaboration,
            participant,
            digest,
            _sees(),
            _readable(),
            _root(request),
        )  # fmt: skip
    )
