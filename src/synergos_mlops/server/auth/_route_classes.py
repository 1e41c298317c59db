"""Every route MLflow's app serves, classified for accounts bound to participants.

A route is

- ``allowed``: it cannot show a participant's data (the UI's files, accounts and permissions,
  experiments, which all participants of a collaboration share); served as MLflow serves it;
- ``filtered``: it can; every run, logged model, model version, registered model, dataset
  and artifact folder named in its request is checked (404 ``RESOURCE_DOES_NOT_EXIST`` for
  another participant's), and its JSON answer loses what the account may not see;
- ``refused``: 403 ``PERMISSION_DENIED`` for a bound account: traces, evaluation datasets,
  the AI gateway and the other GenAI resources (no federated run needs them, and they can
  hold anything a run logged), webhooks (they would send registry events of every
  participant).

Routes are named as MLflow declares them (Flask rules, FastAPI paths), ``/ajax-api/`` folded
onto ``/api/``. The allowed and filtered routes are listed one by one; the refused ones by
family. A route a later MLflow adds is in no list: it is refused to bound accounts until
someone classifies it here, and ``tests/test_privacy.py`` fails until then.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ALLOWED",
    "FILTERED",
    "REFUSED",
    "classify",
    "mlflow_routes",
    "native_routes",
    "route_class",
]

ALLOWED = "allowed"
FILTERED = "filtered"
REFUSED = "refused"


def _routes(text: str) -> frozenset[str]:
    return frozenset(line.strip() for line in text.strip().splitlines())


_ALLOWED = _routes("""
GET /
GET /health
GET /version
GET /signup
GET /build/<path:filename>
GET /static-files/<path:path>
GET /api/3.0/mlflow/server-info
GET /api/3.0/mlflow/ui-telemetry
POST /api/3.0/mlflow/ui-telemetry
POST /api/2.0/mlflow/experiments/create
POST /api/2.0/mlflow/experiments/delete
POST /api/2.0/mlflow/experiments/delete-experiment-tag
GET /api/2.0/mlflow/experiments/get
GET /api/2.0/mlflow/experiments/get-by-name
POST /api/2.0/mlflow/experiments/restore
GET /api/2.0/mlflow/experiments/search
POST /api/2.0/mlflow/experiments/search
POST /api/2.0/mlflow/experiments/set-experiment-tag
POST /api/2.0/mlflow/experiments/update
POST /api/2.0/mlflow/users/create
POST /api/2.0/mlflow/users/create-ui
GET /api/2.0/mlflow/users/current
DELETE /api/2.0/mlflow/users/delete
GET /api/2.0/mlflow/users/get
GET /api/2.0/mlflow/users/list
PATCH /api/2.0/mlflow/users/update-admin
PATCH /api/2.0/mlflow/users/update-password
GET /api/3.0/mlflow/users/current/permissions
GET /api/3.0/mlflow/users/permissions/get
POST /api/3.0/mlflow/users/permissions/grant
GET /api/3.0/mlflow/users/permissions/list
POST /api/3.0/mlflow/users/permissions/revoke
GET /api/3.0/mlflow/users/roles/list
""")

_FILTERED = _routes("""
GET /graphql
POST /graphql
GET /get-artifact
GET /model-versions/get-artifact
GET /api/2.0/mlflow-artifacts/artifacts
DELETE /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
GET /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
PUT /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
GET /api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}
PUT /api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}
POST /api/2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>
POST /api/2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>
POST /api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>
GET /api/2.0/mlflow-artifacts/presigned/<path:artifact_path>
GET /api/2.0/mlflow/artifacts/list
POST /api/2.0/mlflow/upload-artifact
POST /api/2.0/mlflow/experiments/search-datasets
POST /api/2.0mlflow/experiments/search-datasets
POST /api/2.0/mlflow/runs/create
POST /api/2.0/mlflow/runs/delete
POST /api/2.0/mlflow/runs/delete-tag
GET /api/2.0/mlflow/runs/get
POST /api/2.0/mlflow/runs/log-batch
POST /api/2.0/mlflow/runs/log-inputs
POST /api/2.0/mlflow/runs/log-metric
POST /api/2.0/mlflow/runs/log-model
POST /api/2.0/mlflow/runs/log-parameter
POST /api/2.0/mlflow/runs/outputs
POST /api/2.0/mlflow/runs/restore
POST /api/2.0/mlflow/runs/search
POST /api/2.0/mlflow/runs/set-tag
POST /api/2.0/mlflow/runs/update
GET /api/2.0/mlflow/metrics/get-history
GET /api/2.0/mlflow/metrics/get-history-bulk
GET /api/2.0/mlflow/metrics/get-history-bulk-interval
POST /api/2.0/mlflow/logged-models
POST /api/2.0/mlflow/logged-models/search
DELETE /api/2.0/mlflow/logged-models/<model_id>
GET /api/2.0/mlflow/logged-models/<model_id>
PATCH /api/2.0/mlflow/logged-models/<model_id>
GET /api/2.0/mlflow/logged-models/<model_id>/artifacts/directories
GET /api/2.0/mlflow/logged-models/<model_id>/artifacts/files
POST /api/2.0/mlflow/logged-models/<model_id>/params
PATCH /api/2.0/mlflow/logged-models/<model_id>/tags
DELETE /api/2.0/mlflow/logged-models/<model_id>/tags/<tag_key>
POST /api/2.0/mlflow/model-versions/create
DELETE /api/2.0/mlflow/model-versions/delete
DELETE /api/2.0/mlflow/model-versions/delete-tag
GET /api/2.0/mlflow/model-versions/get
GET /api/2.0/mlflow/model-versions/get-download-uri
GET /api/2.0/mlflow/model-versions/search
POST /api/2.0/mlflow/model-versions/set-tag
POST /api/2.0/mlflow/model-versions/transition-stage
PATCH /api/2.0/mlflow/model-versions/update
DELETE /api/2.0/mlflow/registered-models/alias
GET /api/2.0/mlflow/registered-models/alias
POST /api/2.0/mlflow/registered-models/alias
POST /api/2.0/mlflow/registered-models/create
DELETE /api/2.0/mlflow/registered-models/delete
DELETE /api/2.0/mlflow/registered-models/delete-tag
GET /api/2.0/mlflow/registered-models/get
GET /api/2.0/mlflow/registered-models/get-latest-versions
POST /api/2.0/mlflow/registered-models/get-latest-versions
POST /api/2.0/mlflow/registered-models/rename
GET /api/2.0/mlflow/registered-models/search
POST /api/2.0/mlflow/registered-models/set-tag
PATCH /api/2.0/mlflow/registered-models/update
""")

#: Families refused to bound accounts, each with the reason.
_REFUSED: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (r"^/api/\d\.\d/mlflow/(traces|unified-traces)(/|$)", "traces"),
        (r"^/api/\d\.\d/mlflow/(get-trace-artifact|get-online-trace-details)$", "traces"),
        (r"^/v1/traces$", "traces (OpenTelemetry)"),
        (r"^/api/3\.0/mlflow/datasets(/|$)", "evaluation datasets"),
        (r"^/api/\d\.\d/mlflow/artifacts/presigned-(download|upload)-url$", "presigned URLs"),
        (r"^/api/\d\.\d/mlflow/webhooks(/|$)", "registry webhooks"),
        (r"^/api/\d\.\d/mlflow/runs/create-promptlab-run$", "prompt lab"),
        (r"^/gateway(/|$)", "the AI gateway"),
        (r"^/api/\d\.\d/mlflow/(gateway|gateway-proxy)(/|$)", "the AI gateway"),
        (r"^/api/3\.0/mlflow/(assistant|mcp-servers)(/|$)", "the assistant"),
        (r"^/api/3\.0/(mlflow/)?jobs(/|$)", "server jobs"),
        (
            r"^/api/3\.0/mlflow/(scorers|scorer|label-schemas|review-queues|issues)(/|$)",
            "GenAI evaluation",
        ),
        (r"^/api/3\.0/mlflow/(genai|prompt-optimization|demo)(/|$)", "GenAI evaluation"),
        (r"^/api/3\.0/mlflow/(roles|workspaces)(/|$)", "roles and workspaces"),
    )  # fmt: skip
)


def normalize(rule: str) -> str:
    """``/ajax-api/...`` is the UI's twin of ``/api/...``: one classification for both."""
    return "/api/" + rule[len("/ajax-api/") :] if rule.startswith("/ajax-api/") else rule


def classify(method: str, rule: str) -> tuple[str, str] | None:
    """``(class, reason)`` of a route as MLflow declares it; None when unclassified."""
    key = f"{method} {normalize(rule)}"
    if key in _ALLOWED:
        return ALLOWED, "shows no participant's data"
    if key in _FILTERED:
        return FILTERED, "checked and filtered"
    path = normalize(rule)
    for pattern, reason in _REFUSED:
        if pattern.search(path):
            return REFUSED, reason
    return None


def route_class(method: str, rule: str) -> tuple[str, str]:
    """As :func:`classify`; an unclassified route is refused."""
    return classify(method, rule) or (REFUSED, "a route not yet classified for them")


def native_routes(fastapi_app: Any) -> list[Any]:
    """MLflow's FastAPI-native routes, included routers flattened (each has ``path``,
    ``methods`` and ``matches``), its mount of the Flask app aside."""
    from starlette.routing import Mount

    found: list[Any] = []
    for route in fastapi_app.routes:
        if isinstance(route, Mount):
            continue
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI >= 0.120)
            found += list(route.effective_route_contexts())
        else:
            found.append(route)
    return found


def mlflow_routes(flask_app: Any, fastapi_app: Any) -> list[tuple[str, str]]:
    """``(method, rule)`` of every route MLflow's app serves: its Flask app's rules and its
    FastAPI app's native routes."""
    found: set[tuple[str, str]] = set()
    for rule in flask_app.url_map.iter_rules():
        found |= {(m, rule.rule) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    for route in native_routes(fastapi_app):
        methods = getattr(route, "methods", None) or {"GET"}
        found |= {(m, str(route.path)) for m in methods if m not in ("HEAD", "OPTIONS")}
    return sorted(found)
