"""Participant scoping on MLflow's own routes, for accounts bound to participants.

MLflow's basic-auth hooks run first and decide who is asking and what each experiment allows;
these run after them and only ever narrow, for a non-admin account with bindings:

- any Flask route (REST, ajax-api, graphql, get-artifact, metric histories) whose path, query
  or JSON/form body names the run id of a participant the account is not bound to answers
  404 ``RESOURCE_DOES_NOT_EXIST``, as if the run did not exist;
- run searches (``runs/search`` on ``/api`` and ``/ajax-api``, ``mlflowSearchRuns`` on
  ``/graphql``) and artifact listings of the proxy leave such runs out of their answers;
- the FastAPI-native artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/...``
  and its ``/ajax-api`` twin) answers 404 for such runs' files.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus

from synergos_mlops.server.auth._viewer import RunVisibility, Viewer, viewer_for

__all__ = ["install"]

#: MLflow run ids are 32 lower-case hex digits (uuid4().hex).
_RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_SEARCH_SUFFIX = "/mlflow/runs/search"
_ARTIFACT_LIST = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/?$")
_ARTIFACT_PROXY = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/")
_MAX_SCANNED_BODY = 16 * 1024 * 1024


def _run_ids(*texts: str) -> list[str]:
    """Every run id named in ``texts``, percent-encoded or not (``path=1%2F<run>``)."""
    found: list[str] = []
    for text in texts:
        found += _RUN_ID.findall(unquote_plus(text).lower())
    return found


def _not_found(run_id: str) -> dict[str, str]:
    return {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run '{run_id}' not found."}


def _scoped_viewer(username: str | None) -> Viewer | None:
    """The account when it is bound to participants; None when nothing is to be narrowed."""
    if not username:
        return None
    from mlflow.server.auth import store as auth_store

    try:
        user = auth_store.get_user(username)
    except Exception:  # noqa: BLE001 - MLflow's own hook has refused unknown accounts already
        return None
    viewer = viewer_for(user.username, bool(user.is_admin))
    return viewer if viewer.scoped else None


# --- Flask (MLflow's REST API, ajax-api, graphql, get-artifact) --------------------------


def _flask_before_request() -> Any:
    from flask import g, request
    from mlflow.server.auth import is_unprotected_route

    if is_unprotected_route(request.path) or request.authorization is None:
        return None
    viewer = _scoped_viewer(request.authorization.username)
    if viewer is None:
        return None
    visibility = RunVisibility(viewer)
    g.synergos_visibility = visibility
    texts = [request.path, request.query_string.decode("latin-1")]
    if (request.content_length or 0) <= _MAX_SCANNED_BODY and request.method != "GET":
        texts.append(request.get_data(cache=True, as_text=True))
    hidden = visibility.any_hidden(_run_ids(*texts))
    if hidden is None:
        return None
    from flask import jsonify

    response = jsonify(_not_found(hidden))
    response.status_code = 404
    return response


def _run_id_of(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for holder in (item.get("info"), item):
        if isinstance(holder, dict):
            for key in ("run_id", "run_uuid", "runId", "runUuid"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])
    return None


def _tags_of(item: dict[str, Any]) -> dict[str, str] | None:
    data = item.get("data")
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, list):
        return None
    return {str(t.get("key")): str(t.get("value")) for t in tags if isinstance(t, dict)}


def _hidden_item(visibility: RunVisibility, item: Any) -> bool:
    run_id = _run_id_of(item)
    if run_id is None:
        return False
    info = item.get("info") if isinstance(item.get("info"), dict) else {}
    experiment_id = info.get("experiment_id") or info.get("experimentId")
    tags = _tags_of(item)
    if experiment_id is not None and tags is not None:
        return visibility.hidden_by_tags(str(experiment_id), tags)
    return visibility.hidden(run_id)


def _prune(visibility: RunVisibility, node: Any) -> Any:
    """Drop, from every list in a JSON answer, the runs (and artifact folders) hidden from
    the account."""
    if isinstance(node, dict):
        return {key: _prune(visibility, value) for key, value in node.items()}
    if isinstance(node, list):
        kept = []
        for item in node:
            if _hidden_item(visibility, item):
                continue
            path = item.get("path") if isinstance(item, dict) else None
            if isinstance(path, str) and visibility.any_hidden(_run_ids(path)):
                continue
            kept.append(_prune(visibility, item))
        return kept
    return node


def _flask_after_request(response: Any) -> Any:
    from flask import g, request

    visibility: RunVisibility | None = g.get("synergos_visibility")
    if visibility is None or response.status_code >= 400 or response.direct_passthrough:
        return response
    path = request.path
    if not (
        path.endswith(_SEARCH_SUFFIX) or path.endswith("/graphql") or _ARTIFACT_LIST.match(path)
    ):
        return response
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return response
    response.set_data(json.dumps(_prune(visibility, body)))
    return response


# --- FastAPI (MLflow's native artifact proxy) --------------------------------------------


async def _artifact_proxy_guard(request: Any, call_next: Any) -> Any:
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    path = request.url.path
    username = getattr(request.state, "username", None)
    if not _ARTIFACT_PROXY.match(path) or not username:
        return await call_next(request)

    def hidden() -> str | None:
        viewer = _scoped_viewer(username)
        if viewer is None:
            return None
        return RunVisibility(viewer).any_hidden(_run_ids(path, request.url.query))

    run_id = await run_in_threadpool(hidden)
    if run_id is not None:
        return JSONResponse(_not_found(run_id), status_code=404)
    return await call_next(request)


def install(flask_app: Any, fastapi_app: Any) -> None:
    """Add the hooks after MLflow's basic-auth ones (its app must be set up already)."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    flask_app.before_request(_flask_before_request)
    flask_app.after_request(_flask_after_request)
    # Innermost: runs after MLflow's permission middleware has authenticated the request.
    fastapi_app.user_middleware.append(
        Middleware(BaseHTTPMiddleware, dispatch=_artifact_proxy_guard)
    )
