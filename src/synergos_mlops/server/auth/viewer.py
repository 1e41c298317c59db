"""Who is asking, and what that account may see, in the Synergos API.

Every Synergos route but ``/health`` depends on :func:`require_viewer` when authentication
is on: it checks the Basic credentials against MLflow's auth store (401 otherwise) and keeps
the account in a context variable for the request. The API then narrows what it reads:

- an experiment the account cannot READ (MLflow's per-experiment permission) is absent: left
  out of ``/collaborations``, 404 for its runs, bundles and artifacts;
- an account bound to participants (``synmlops auth bind``) sees a collaboration's federation
  runs and its own participants' runs, and nothing of the other participants;
- the tracker's writes need EDIT on the experiment, or, for a new experiment, an account
  that may create one (any unbound account; its creator gets MANAGE, as in MLflow).

With authentication off there is no viewer and nothing is narrowed.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from synergos_mlops.server.http import ApiError

__all__ = [
    "RunVisibility",
    "Unauthenticated",
    "Viewer",
    "authorize_metric_writes",
    "authorize_resolve",
    "current_viewer",
    "grant_creator",
    "require_viewer",
    "visible_participants",
    "visible_run",
    "visible_tree",
]

PARTICIPANT_TAG = "synergos.participant"
ROLE_TAG = "synergos.role"
COLLABORATION_TAG = "synergos.collaboration"

_VIEWER: contextvars.ContextVar[Viewer | None] = contextvars.ContextVar(
    "synergos_viewer", default=None
)
#: True once the factory turned authentication on in this process: no viewer is then an error.
_REQUIRED = {"on": False}


class Unauthenticated(ApiError):
    """No or wrong credentials: 401 with a Basic challenge."""

    def __init__(self) -> None:
        super().__init__(
            401, "UNAUTHENTICATED", "this server needs a user name and password (HTTP Basic)"
        )


@dataclass(frozen=True)
class Viewer:
    """An authenticated MLflow account."""

    username: str
    is_admin: bool
    bindings: frozenset[tuple[str, str]] = frozenset()
    _permissions: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def scoped(self) -> bool:
        """Bound to participants (an admin never is)."""
        return bool(self.bindings) and not self.is_admin

    def permission(self, experiment_id: str) -> Any:
        if experiment_id not in self._permissions:
            from mlflow.server.auth import _get_experiment_permission

            self._permissions[experiment_id] = _get_experiment_permission(
                experiment_id, self.username
            )
        return self._permissions[experiment_id]

    def can_read(self, experiment_id: str) -> bool:
        return self.is_admin or bool(self.permission(experiment_id).can_read)

    def can_edit(self, experiment_id: str) -> bool:
        return self.is_admin or bool(self.permission(experiment_id).can_update)

    def sees_participant(self, collaboration: str | None, participant: str | None) -> bool:
        """Whether a participant run of ``collaboration`` is visible to this account."""
        if not self.scoped:
            return True
        return (collaboration or "", participant or "") in self.bindings


def authenticate(request: Any) -> Viewer | None:
    """The account of a request's Basic credentials, checked by MLflow's auth store."""
    from mlflow.server.auth import _authenticate_fastapi_request

    from synergos_mlops.server.auth._bindings import BindingStore

    user = _authenticate_fastapi_request(request)
    if user is None:
        return None
    return viewer_for(user.username, bool(user.is_admin), BindingStore)


def viewer_for(username: str, is_admin: bool, binding_store: Any = None) -> Viewer:
    from mlflow.server.auth import auth_config

    if binding_store is None:
        from synergos_mlops.server.auth._bindings import BindingStore as binding_store
    bindings = (
        frozenset() if is_admin else binding_store.at(auth_config.database_uri).of_user(username)
    )
    return Viewer(username, is_admin, bindings)


async def require_viewer(request: Request) -> None:
    """FastAPI dependency: authenticate, or 401."""
    viewer = await run_in_threadpool(authenticate, request)
    if viewer is None:
        raise Unauthenticated()
    request.state.username = viewer.username
    _VIEWER.set(viewer)


def require_authentication() -> None:
    """Called by the factory when authentication is on in this process."""
    _REQUIRED["on"] = True


def current_viewer() -> Viewer | None:
    """The request's account; None when authentication is off."""
    viewer = _VIEWER.get()
    if viewer is None and _REQUIRED["on"]:  # a route without require_viewer: fail closed
        raise Unauthenticated()
    return viewer


# --- reads -------------------------------------------------------------------------------


def visible_tree(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``/collaborations`` without the experiments the account cannot read."""
    viewer = current_viewer()
    if viewer is None or viewer.is_admin:
        return tree
    out = []
    for collaboration in tree:
        projects = []
        for project in collaboration["projects"]:
            experiments = [
                e for e in project["experiments"] if viewer.can_read(e["mlflow_experiment_id"])
            ]
            if viewer.scoped:
                # How many participants a run has is the others' business too: not shown.
                experiments = [
                    {**e, "runs": [{**r, "participant_count": None} for r in e["runs"]]}
                    for e in experiments
                ]
            if experiments:
                projects.append({**project, "experiments": experiments})
        if projects:
            out.append({**collaboration, "projects": projects})
    return out


def visible_participants(collaboration: str) -> list[str] | None:
    """The participants whose records the account may see (None: every one)."""
    viewer = current_viewer()
    if viewer is None or not viewer.scoped:
        return None
    return sorted(p for c, p in viewer.bindings if c == collaboration)


def visible_run(run: Any) -> Any:
    """A resolved FederatedRun as the account may see it: NotFoundError when its experiment
    is not readable; only the bound participants when the account is scoped."""
    from synergos_mlops.views.federated_runs import NotFoundError

    viewer = current_viewer()
    if viewer is None or viewer.is_admin:
        return run
    if not viewer.can_read(run.experiment_id):
        raise NotFoundError(f"run {run.run_id!r} not found in experiment {run.ids.name!r}")
    if not viewer.scoped:
        return run
    collaboration = run.ids.collaboration
    kept = tuple(
        p for p in run.participants if viewer.sees_participant(collaboration, p.synergos_id)
    )
    return dataclasses.replace(run, participants=kept)


# --- MLflow runs by id (shared with the hooks on MLflow's own routes) --------------------


class RunVisibility:
    """Whether runs, named by MLflow run id, are hidden from a scoped account; cached for
    one request."""

    def __init__(self, viewer: Viewer, tracking_store: Any = None) -> None:
        self.viewer = viewer
        self._store = tracking_store
        self._collaborations: dict[str, str | None] = {}
        self._runs: dict[str, tuple[str, dict[str, str]] | None] = {}

    @property
    def store(self) -> Any:
        if self._store is None:
            from mlflow.server.handlers import _get_tracking_store

            self._store = _get_tracking_store()
        return self._store

    def collaboration(self, experiment_id: str) -> str | None:
        if experiment_id not in self._collaborations:
            found: str | None = None
            try:
                experiment = self.store.get_experiment(experiment_id)
                found = experiment.tags.get(COLLABORATION_TAG) or (
                    experiment.name.split("/", 1)[0] if "/" in experiment.name else None
                )
            except Exception:  # noqa: BLE001 - an unknown experiment has no collaboration
                found = None
            self._collaborations[experiment_id] = found
        return self._collaborations[experiment_id]

    def _run(self, run_id: str) -> tuple[str, dict[str, str]] | None:
        if run_id not in self._runs:
            try:
                run = self.store.get_run(run_id)
                self._runs[run_id] = (run.info.experiment_id, dict(run.data.tags))
            except Exception:  # noqa: BLE001 - not a run id: nothing to hide
                self._runs[run_id] = None
        return self._runs[run_id]

    def hidden_by_tags(self, experiment_id: str, tags: dict[str, str]) -> bool:
        if not self.viewer.scoped:
            return False
        participant = tags.get(PARTICIPANT_TAG)
        if participant is None and tags.get(ROLE_TAG) != "participant":
            return False  # a federation (global) run, or a run outside the federated mapping
        return not self.viewer.sees_participant(self.collaboration(experiment_id), participant)

    def hidden(self, run_id: str) -> bool:
        if not self.viewer.scoped:
            return False
        found = self._run(run_id)
        return found is not None and self.hidden_by_tags(*found)

    def any_hidden(self, run_ids: Iterable[str]) -> str | None:
        return next((r for r in dict.fromkeys(run_ids) if self.hidden(r)), None)


# --- the tracker's writes ----------------------------------------------------------------


def authorize_metric_writes(run_ids: Iterable[str]) -> None:
    """A metric batch needs EDIT on every run's experiment, and runs the account sees."""
    viewer = current_viewer()
    if viewer is None or viewer.is_admin:
        return
    visibility = RunVisibility(viewer)
    for run_id in dict.fromkeys(run_ids):
        found = visibility._run(run_id)
        if found is None:
            continue  # the write itself reports an unknown run
        experiment_id, tags = found
        if visibility.hidden_by_tags(experiment_id, tags) or not viewer.can_read(experiment_id):
            raise ApiError(404, "RUN_NOT_FOUND", f"run {run_id!r} not found")
        if not viewer.can_edit(experiment_id):
            raise ApiError(
                403, "PERMISSION_DENIED", f"{viewer.username!r} may not write to run {run_id!r}"
            )


def authorize_resolve(store: Any, experiment_name: str) -> bool:
    """Before ``runs/resolve``: EDIT on an existing experiment; an unbound account for a new
    one; never an account bound to participants. Returns whether the experiment is new (its
    creator then gets MANAGE)."""
    viewer = current_viewer()
    experiment = store.get_experiment_by_name(experiment_name)
    if viewer is None or viewer.is_admin:
        return experiment is None
    if viewer.scoped:  # its answer would name every participant's run
        raise ApiError(
            403, "PERMISSION_DENIED",
            f"{viewer.username!r} is bound to participants and may not resolve runs",
        )  # fmt: skip
    if experiment is None:
        return True
    if not viewer.can_edit(experiment.experiment_id):
        if not viewer.can_read(experiment.experiment_id):
            raise ApiError(403, "PERMISSION_DENIED", f"{viewer.username!r} may not write here")
        raise ApiError(
            403, "PERMISSION_DENIED",
            f"{viewer.username!r} may not write to experiment {experiment_name!r} (needs EDIT)",
        )  # fmt: skip
    return False


def grant_creator(experiment_id: str, collaboration: str) -> None:
    """A new experiment made by the tracker: the account that created it manages it (as with
    MLflow's own create-experiment route), and the accounts bound to participants of its
    collaboration may READ it."""
    if not _REQUIRED["on"]:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import auth_config
    from mlflow.server.auth import store as auth_store

    from synergos_mlops.server.auth._bindings import BindingStore
    from synergos_mlops.server.auth.command import grant_collaboration_read

    viewer = current_viewer()
    if viewer is not None and not viewer.is_admin:
        with contextlib.suppress(MlflowException):  # a concurrent resolve granted it first
            auth_store.create_experiment_permission(experiment_id, viewer.username, "MANAGE")
    members = {
        b.username
        for b in BindingStore.at(auth_config.database_uri).list()
        if b.collaboration == collaboration
    }
    for username in sorted(members):
        grant_collaboration_read(auth_store, username, [experiment_id])
