"""Authentication and per-account visibility on every route of the server.

Built on MLflow's own basic-auth app (``mlflow.server.auth``): its users, passwords, admin
bootstrap, per-experiment permissions and auth database. What it adds:

- ``_config``: the auth configuration kept in the store folder (``basic_auth.ini``, the
  database beside ``mlflow.db`` or the PostgreSQL backend), the admin bootstrap and the
  shared secret key, done once by ``synmlops serve`` before any worker starts.
- ``_bindings``: participant bindings, our own table in the auth database. An account bound
  to participant P of collaboration C sees the federation (global) runs of C and P's runs,
  and nothing of C's other participants.
- ``viewer``: who is asking (a FastAPI dependency on every Synergos route) and what that
  account may see or write in the Synergos API.
- ``_route_classes``: every route MLflow serves, classified for bound accounts: allowed,
  filtered or refused (a route not classified is refused).
- ``_visibility`` and ``_answers``: which runs, logged models, model versions, registered
  models, datasets and artifact folders are another participant's, and MLflow's JSON
  answers without them.
- ``_mlflow_routes``: the same participant scoping on MLflow's own routes (Flask
  before/after-request hooks, after MLflow's own; a middleware for its FastAPI routes).
"""

from __future__ import annotations

from synergos_mlops.server.auth._bindings import Binding
from synergos_mlops.server.auth._config import AUTH_APP_ENV, AuthSetup, auth_setup, prepare_auth
from synergos_mlops.server.auth._route_classes import (
    ALLOWED,
    FILTERED,
    REFUSED,
    classify,
    mlflow_routes,
    route_class,
)

__all__ = [
    "ALLOWED",
    "AUTH_APP_ENV",
    "FILTERED",
    "REFUSED",
    "AuthSetup",
    "Binding",
    "auth_setup",
    "classify",
    "mlflow_routes",
    "prepare_auth",
    "route_class",
]
