"""Participant bindings: ``synergos_participant_bindings`` in MLflow's auth database.

One row binds an MLflow account (by user name) to one participant of one collaboration. The
table is ours, created with SQLAlchemy beside MLflow's auth tables, which are never altered.
A binding only ever narrows what an account sees, so a stale row cannot widen access.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Column, DateTime, MetaData, String, Table, create_engine, func, select
from sqlalchemy.engine import Engine

__all__ = ["Binding", "BindingStore"]

_METADATA = MetaData()
BINDINGS = Table(
    "synergos_participant_bindings",
    _METADATA,
    Column("username", String(255), primary_key=True),
    Column("collaboration", String(255), primary_key=True),
    Column("participant", String(255), primary_key=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)


@dataclass(frozen=True, order=True)
class Binding:
    username: str
    collaboration: str
    participant: str


class BindingStore:
    """Bindings in the auth database at ``database_uri``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def at(cls, database_uri: str) -> BindingStore:
        return cls(_engine(database_uri))

    def create_table(self) -> None:
        _METADATA.create_all(self.engine, checkfirst=True)

    def bind(self, username: str, collaboration: str, participant: str) -> bool:
        """Add a binding; False when it was already there."""
        key = Binding(username, collaboration, participant)
        if key in self.list(username):
            return False
        with self.engine.begin() as connection:
            connection.execute(
                BINDINGS.insert().values(
                    username=username, collaboration=collaboration, participant=participant
                )
            )
        return True

    def unbind(
        self, username: str, collaboration: str | None = None, participant: str | None = None
    ) -> int:
        """Remove the matching bindings of ``username``; return how many."""
        statement = BINDINGS.delete().where(BINDINGS.c.username == username)
        if collaboration is not None:
            statement = statement.where(BINDINGS.c.collaboration == collaboration)
        if participant is not None:
            statement = statement.where(BINDINGS.c.participant == participant)
        with self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount or 0)

    def list(self, username: str | None = None) -> list[Binding]:
        statement = select(BINDINGS.c.username, BINDINGS.c.collaboration, BINDINGS.c.participant)
        if username is not None:
            statement = statement.where(BINDINGS.c.username == username)
        with self.engine.connect() as connection:
            return sorted(Binding(*row) for row in connection.execute(statement))

    def of_user(self, username: str) -> frozenset[tuple[str, str]]:
        """``{(collaboration, participant)}`` the account is bound to (empty: unbound)."""
        return frozenset((b.collaboration, b.participant) for b in self.list(username))


@lru_cache(maxsize=4)
def _engine(database_uri: str) -> Engine:
    return create_engine(database_uri, pool_pre_ping=True)
