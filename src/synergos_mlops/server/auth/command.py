"""``synmlops auth``: accounts and participant bindings, on a store's auth database.

Accounts are MLflow's own (its auth store, the same as its ``/api/2.0/mlflow/users/...``
API); bindings are ours. Both work on the auth database named by the store's
``basic_auth.ini`` (written on first use), so they take effect on a running server at the
next request.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synergos_mlops.errors import SynergosError
from synergos_mlops.federation import validate_id
from synergos_mlops.server.auth._bindings import Binding, BindingStore
from synergos_mlops.server.auth._config import auth_setup

__all__ = ["AuthAdmin"]


class AuthCommandError(SynergosError):
    """An account or binding cannot be changed as asked."""


@dataclass
class AuthAdmin:
    """The accounts and bindings of one store."""

    users: Any  # mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore
    bindings: BindingStore
    store: str
    backend_store_uri: str | None

    @classmethod
    def open(cls, store: str | os.PathLike[str], backend_store_uri: str | None) -> AuthAdmin:
        from synergos_mlops.server.mlflow_imports import quiet_mlflow_server_imports

        with quiet_mlflow_server_imports():  # mlflow.server.auth imports its FastAPI app
            from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

        setup = auth_setup(store, backend_store_uri, write=True)
        users = SqlAlchemyStore()
        try:
            users.init_db(setup.database_uri)
        except Exception as exc:
            raise AuthCommandError(
                f"the auth database named in {setup.config_path} cannot be opened: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        bindings = BindingStore.at(setup.database_uri)
        bindings.create_table()
        return cls(users, bindings, os.fspath(store), backend_store_uri)

    def add_user(self, username: str, password: str, *, admin: bool = False) -> None:
        from mlflow.exceptions import MlflowException

        if self.users.has_user(username):
            raise AuthCommandError(f"account {username!r} exists already")
        try:
            self.users.create_user(username, password, is_admin=admin)
        except MlflowException as exc:
            raise AuthCommandError(exc.message.splitlines()[0]) from None

    def _collaboration_experiments(self, collaboration: str) -> list[str]:
        from synergos_mlops.storage import reads
        from synergos_mlops.views.federated_runs import Backend

        if self.backend_store_uri:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            session_maker = SqlAlchemyStore(self.backend_store_uri, "unused").ManagedSessionMaker
        else:
            try:
                session_maker = Backend.of_store_folder(self.store).session_maker
            except SynergosError:
                return []
        return [
            e.experiment_id
            for e in reads.synergos_experiments(session_maker)
            if e.collaboration == collaboration
        ]

    def bind(self, username: str, collaboration: str, participant: str) -> list[str]:
        """Bind; grant READ on the collaboration's experiments where the account has no
        permission yet. Returns the experiment ids granted."""
        validate_id("collaboration", collaboration)
        validate_id("participant", participant)
        if not self.users.has_user(username):
            raise AuthCommandError(
                f"no account {username!r}: create it first (synmlops auth add-user, or "
                "MLflow's users API)"
            )
        if self.users.get_user(username).is_admin:
            raise AuthCommandError(
                f"{username!r} is an admin and sees everything; bind a non-admin account"
            )
        self.bindings.bind(username, collaboration, participant)
        return grant_collaboration_read(
            self.users, username, self._collaboration_experiments(collaboration)
        )

    def unbind(self, username: str, collaboration: str | None, participant: str | None) -> int:
        return self.bindings.unbind(username, collaboration, participant)

    def list(self, username: str | None = None) -> list[Binding]:
        return self.bindings.list(username)


def grant_collaboration_read(users: Any, username: str, experiment_ids: list[str]) -> list[str]:
    """READ for ``username`` on each experiment where it holds no permission of its own."""
    from mlflow.exceptions import MlflowException

    granted = []
    for experiment_id in experiment_ids:
        try:
            users.get_experiment_permission(experiment_id, username)
            continue  # an explicit permission (even NO_PERMISSIONS) is the operator's word
        except MlflowException:
            pass
        with contextlib.suppress(MlflowException):  # granted meanwhile
            users.create_experiment_permission(experiment_id, username, "READ")
            granted.append(experiment_id)
    return granted


def echo_bindings(bindings: list[Binding], echo: Callable[[str], None]) -> None:
    if not bindings:
        echo("no participant bindings")
        return
    for b in bindings:
        echo(f"{b.username}\tcollaboration {b.collaboration}\tparticipant {b.participant}")
