"""Participant scoping on MLflow's own routes, for accounts bound to participants.

MLflow's basic-auth hooks run first and decide who is asking and what each experiment allows;
these run after them and only ever narrow, for a non-admin account with bindings. Each route
MLflow serves is classified in ``_route_classes`` (allowed / filtered / refused; a route not
classified is refused):

- a refused route answers 403 ``PERMISSION_DENIED``;
- a filtered route answers 404 ``RESOURCE_DOES_NOT_EXIST``, as if it did not exist, when its
  path, query or body names another participant's run or logged model, or a model version or
  registered model that comes from one (``_visibility``), or an artifact proxy folder of one;
- a filtered route's JSON answer loses what comes from another participant's runs
  (``_answers``), or is a 404 when it is about such a thing.

Flask routes (MLflow's REST API, ajax-api, graphql, get-artifact) are guarded by
before/after-request hooks; MLflow's FastAPI-native routes (the artifact proxy, the gateway,
jobs, OpenTelemetry ingestion...) by a middleware.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from synergos_mlops.server.auth._answers import Hidden, prune
from synergos_mlops.server.auth._route_classes import (
    ALLOWED,
    REFUSED,
    native_routes,
    route_class,
)
from synergos_mlops.server.auth._visibility import Visibility
from synergos_mlops.server.auth.viewer import Viewer, viewer_for

__all__ = ["install"]

_MAX_SCANNED_BODY = 16 * 1024 * 1024
#: Routes answering a file's bytes: checked before, never parsed after.
_FILE_ROUTE_ENDS = ("get-artifact", "/artifacts/files", "<path:artifact_path>")
#: Paths served by Synergos routers, which scope by themselves (auth/viewer.py).
_SYNERGOS_PATHS = ("/api/synergos/", "/synergos/", "/synergos")


def _not_found(what: str) -> dict[str, str]:
    return {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{what} not found."}


def _refused(viewer: Viewer, reason: str) -> dict[str, str]:
    return {
        "error_code": "PERMISSION_DENIED",
        "message": f"account {viewer.username!r} is bound to participants and may not use "
        f"this route ({reason})",
    }


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


def _registry_hidden(visibility: Visibility, rule: str, fields: dict[str, Any]) -> str | None:
    """A model version (name and version) or a registered model (name) named by a registry
    route, when it comes from another participant's runs."""
    if "model-versions" not in rule and "registered-models" not in rule:
        return None
    name, version = fields.get("name"), fields.get("version")
    if not isinstance(name, str) or not name:
        return None
    if version is not None and visibility.version_hidden(name, str(version)):
        return f"Model version '{name}' version {version}"
    if visibility.registered_model_hidden(name):
        return f"Registered model '{name}'"
    return None


# --- Flask (MLflow's REST API, ajax-api, graphql, get-artifact) --------------------------


def _flask_hidden(visibility: Visibility, rule: str) -> str | None:
    from flask import request

    texts = [request.path, request.query_string.decode("latin-1")]
    body: Any = None
    if (request.content_length or 0) <= _MAX_SCANNED_BODY and request.method != "GET":
        texts.append(request.get_data(cache=True, as_text=True))
        body = request.get_json(silent=True, cache=True)
    found = visibility.named_hidden(*texts)
    if found is None and "mlflow-artifacts" in rule:
        view_args = request.view_args or {}
        artifact_path = view_args.get("artifact_path") or request.args.get("path") or ""
        found = visibility.artifact_path_hidden(str(artifact_path))
    if found is None:
        fields = {**(body if isinstance(body, dict) else {}), **request.args.to_dict()}
        found = _registry_hidden(visibility, rule, fields)
    return found


def _flask_before_request() -> Any:
    from flask import g, jsonify, request
    from mlflow.server.auth import is_unprotected_route

    if is_unprotected_route(request.path) or request.authorization is None:
        return None
    if request.url_rule is None:  # Flask answers 404 itself
        return None
    viewer = _scoped_viewer(request.authorization.username)
    if viewer is None:
        return None
    rule = request.url_rule.rule
    method = "GET" if request.method == "HEAD" else request.method
    kind, reason = route_class(method, rule)
    if kind == ALLOWED:
        return None
    if kind == REFUSED:
        response = jsonify(_refused(viewer, reason))
        response.status_code = 403
        return response
    visibility = Visibility(viewer)
    g.synergos_visibility = visibility
    hidden = _flask_hidden(visibility, rule)
    if hidden is None:
        return None
    response = jsonify(_not_found(hidden))
    response.status_code = 404
    return response


def _flask_after_request(response: Any) -> Any:
    from flask import g, request

    visibility: Visibility | None = g.get("synergos_visibility")
    if visibility is None or response.status_code >= 400 or response.direct_passthrough:
        return response
    rule = request.url_rule.rule if request.url_rule is not None else ""
    if rule.endswith(_FILE_ROUTE_ENDS) or response.mimetype != "application/json":
        return response
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return response
    registry = "registered-models" in rule or rule == "/graphql"
    try:
        response.set_data(json.dumps(prune(visibility, body, registry=registry)))
    except Hidden as hidden:
        response.set_data(json.dumps(_not_found(hidden.what)))
        response.status_code = 404
    return response


# --- FastAPI (MLflow's native routes: the artifact proxy, gateway, jobs, OTel, ...) ------


def _basic_username(request: Any) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded).decode("utf-8").partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _native_route(routes: list[Any], scope: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The native route answering ``scope``, and its path parameters."""
    from starlette.routing import Match

    for route in routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            return route, dict(child.get("path_params") or {})
    return None


def _fastapi_guard(routes: list[Any]) -> Any:
    async def guard(request: Any, call_next: Any) -> Any:
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool

        path = request.url.path
        if path.startswith(_SYNERGOS_PATHS):
            return await call_next(request)
        matched = _native_route(routes, request.scope)
        if matched is None:  # MLflow's Flask app answers it, behind the hooks above
            return await call_next(request)
        route, path_params = matched
        username = getattr(request.state, "username", None) or _basic_username(request)

        def decide() -> tuple[int, dict[str, str]] | None:
            viewer = _scoped_viewer(username)
            if viewer is None:
                return None
            method = "GET" if request.method == "HEAD" else request.method
            kind, reason = route_class(method, route.path)
            if kind == ALLOWED:
                return None
            if kind == REFUSED:
                return 403, _refused(viewer, reason)
            visibility = Visibility(viewer)
            artifact_path = path_params.get("artifact_path") or ""
            found = visibility.named_hidden(path, request.url.query) or (
                visibility.artifact_path_hidden(str(artifact_path))
            )
            return None if found is None else (404, _not_found(found))

        decided = await run_in_threadpool(decide)
        if decided is not None:
            return JSONResponse(decided[1], status_code=decided[0])
        return await call_next(request)

    return guard


def install(flask_app: Any, fastapi_app: Any) -> None:
    """Add the hooks after MLflow's basic-auth ones (its app must be set up already, and the
    Synergos routers not included yet)."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    flask_app.before_request(_flask_before_request)
    flask_app.after_request(_flask_after_request)
    # Innermost: runs after MLflow's permission middleware has authenticated the request.
    fastapi_app.user_middleware.append(
        Middleware(BaseHTTPMiddleware, dispatch=_fastapi_guard(native_routes(fastapi_app)))
    )
