"""The auth configuration of a store, and the start-up work ``synmlops serve --auth`` does.

MLflow's basic-auth app reads an ini file named by ``MLFLOW_AUTH_CONFIG_PATH`` when it is
imported, in every worker. ``serve`` writes ``<store>/basic_auth.ini`` on first use (an
operator's later edits are kept), with the auth database beside ``mlflow.db``
(``sqlite:///<store>/basic_auth.db``) or in the PostgreSQL backend database, and points the
workers at it. Before any worker starts it creates the admin account (MLflow does this itself
only for ``--app-name basic-auth``), creates the bindings table, and fixes one Flask secret
key for all workers so that their CSRF and session keys agree.
"""

from __future__ import annotations

import configparser
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

from synergos_mlops.errors import SynergosError
from synergos_mlops.store import StoreFolder

__all__ = ["AUTH_APP_ENV", "AUTH_INI", "AuthSetup", "auth_setup", "prepare_auth"]

#: Set by ``serve`` in the server's environment: the factory then turns authentication on.
AUTH_APP_ENV = "_SYNMLOPS_AUTH_APP"
AUTH_INI = "basic_auth.ini"
# How long a verified password stays verified in a worker (MLflow's auth_cache_ttl_seconds).
AUTH_CACHE_SECONDS = 30
AUTH_DB = "basic_auth.db"
DEFAULT_PERMISSION = "NO_PERMISSIONS"


class AuthConfigError(SynergosError):
    """Authentication cannot be set up as configured."""


@dataclass(frozen=True)
class AuthSetup:
    """Where a store's auth configuration and database are."""

    config_path: Path
    database_uri: str
    admin_username: str


def _default_database_uri(folder: StoreFolder, backend_store_uri: str | None) -> str:
    if backend_store_uri and backend_store_uri.split(":", 1)[0].startswith("postgresql"):
        return backend_store_uri
    return f"sqlite:///{folder.path / AUTH_DB}"


def auth_setup(
    store: str | os.PathLike[str], backend_store_uri: str | None = None, *, write: bool = False
) -> AuthSetup:
    """The auth setup of ``store``: ``MLFLOW_AUTH_CONFIG_PATH`` when set, else
    ``<store>/basic_auth.ini``, written first when ``write`` and absent."""
    folder = StoreFolder.at(store)
    explicit = os.environ.get("MLFLOW_AUTH_CONFIG_PATH")
    path = Path(explicit) if explicit else folder.path / AUTH_INI
    parser = configparser.ConfigParser()
    if not path.is_file():
        if explicit or not write:
            raise AuthConfigError(
                f"no auth configuration at {path}: start `synmlops serve --auth` on the store "
                "once, or set MLFLOW_AUTH_CONFIG_PATH"
            )
        folder.check()
        parser["mlflow"] = {
            "default_permission": DEFAULT_PERMISSION,
            "database_uri": _default_database_uri(folder, backend_store_uri),
            "admin_username": "admin",
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
            # MLflow's credential cache: a password is hashed (scrypt, ~0.1 s of CPU) once
            # per account and window, not on every request a page or a tracker sends.
            "auth_cache_ttl_seconds": str(AUTH_CACHE_SECONDS),
        }
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(
                "# MLflow basic-auth configuration of this store, written by synmlops serve "
                "--auth.\n# The admin password is never kept here: MLFLOW_AUTH_ADMIN_PASSWORD "
                "creates the admin once.\n"
            )
            parser.write(out)
    try:
        parser.read(path)
        section = parser["mlflow"]
        database_uri = section["database_uri"]
    except (configparser.Error, KeyError) as exc:
        raise AuthConfigError(f"auth configuration {path} is not usable: {exc}") from None
    admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or section.get("admin_username") or ""
    return AuthSetup(path, database_uri, admin)


def prepare_auth(
    store: str | os.PathLike[str], backend_store_uri: str | None, environ: dict[str, str]
) -> dict[str, str]:
    """Check and bootstrap authentication; return what the server's environment needs."""
    setup = auth_setup(store, backend_store_uri, write=True)
    admin_password = environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") or None
    if not setup.admin_username:
        raise AuthConfigError(
            f"--auth needs an admin account name: set admin_username in {setup.config_path} "
            "or MLFLOW_AUTH_ADMIN_USERNAME"
        )
    from mlflow.exceptions import MlflowException

    try:
        with warnings.catch_warnings():  # import-time deprecations of MLflow's dependencies
            warnings.simplefilter("ignore")
            from mlflow.server import auth as mlflow_auth
    except ImportError as exc:  # MLflow's basic-auth app needs its [auth] extra (Flask-WTF)
        raise AuthConfigError(f"--auth: {exc}") from None

    from synergos_mlops.server.auth._bindings import BindingStore

    try:
        mlflow_auth.store.init_db(setup.database_uri)
        if admin_password is None and not mlflow_auth.store.has_user(setup.admin_username):
            raise AuthConfigError(
                f"--auth needs the first admin's password: set MLFLOW_AUTH_ADMIN_PASSWORD "
                f"(it creates the admin account {setup.admin_username!r} once)"
            )
        mlflow_auth.create_admin_user(setup.admin_username, admin_password)
        BindingStore.at(setup.database_uri).create_table()
    except MlflowException as exc:
        raise AuthConfigError(f"--auth: {exc.message.splitlines()[0]}") from None
    except AuthConfigError:
        raise
    except Exception as exc:  # the auth database cannot be opened or migrated
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AuthConfigError(
            f"--auth: the auth database named in {setup.config_path} cannot be used: {first}"
        ) from None
    secret = environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    return {
        AUTH_APP_ENV: "1",
        "MLFLOW_AUTH_CONFIG_PATH": str(setup.config_path),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret,
        # The admin exists now: workers only open the auth database (MLflow's own protocol).
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
    }
