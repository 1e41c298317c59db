"""Reads of the data catalogue and lineage from MLflow's own tables.

Catalogue entries are MLflow datasets (``datasets``) whose source type is
``synergos-participant``, linked to participant runs by ``inputs`` (the split in the input tag
``mlflow.data.context``); models are MLflow's logged models (``logged_models.source_run_id``)
and registered model versions (``model_versions.run_id``). Every function is a few SQL
queries through MLflow's SQLAlchemy models; they only read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from synergos_mlops.storage.reads import ACTIVE, PARENT_TAG, SessionMaker

__all__ = [
    "DatasetUse",
    "ModelRow",
    "ModelVersionRow",
    "dataset_uses",
    "logged_models",
    "model_version",
    "model_versions",
    "run_lineage_tags",
]

SOURCE_TYPE = "synergos-participant"
CONTEXT_TAG = "mlflow.data.context"
MODEL_URI = "models:/"


@dataclass(frozen=True)
class DatasetUse:
    """One catalogue dataset used by one (participant) run."""

    dataset_uuid: str
    experiment_id: str
    name: str
    digest: str
    source: str
    schema: str | None
    profile: str | None
    run_uuid: str
    run_start: int | None
    context: str | None


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    name: str
    source_run_id: str
    experiment_id: str
    status: str | None
    creation_time: int | None


@dataclass(frozen=True)
class ModelVersionRow:
    name: str
    version: int
    run_id: str | None
    model_id: str | None
    source: str | None
    status: str | None
    creation_time: int | None


def dataset_uses(
    session_maker: SessionMaker,
    *,
    run_uuids: Iterable[str] | None = None,
    digest: str | None = None,
    experiment_ids: Iterable[str] | None = None,
    with_profile: bool = True,
) -> list[DatasetUse]:
    """Every use of a catalogue dataset by an active run (of ``run_uuids``, or of the dataset
    ``digest``), oldest run first."""
    from mlflow.store.tracking.dbmodels.models import SqlDataset, SqlInput, SqlInputTag, SqlRun
    from sqlalchemy import null

    wanted = None if run_uuids is None else list(run_uuids)
    if wanted is not None and not wanted:
        return []
    with session_maker() as session:
        query = (
            session.query(
                SqlDataset.dataset_uuid,
                SqlDataset.experiment_id,
                SqlDataset.name,
                SqlDataset.digest,
                SqlDataset.dataset_source,
                SqlDataset.dataset_schema,
                SqlDataset.dataset_profile if with_profile else null(),
                SqlRun.run_uuid,
                SqlRun.start_time,
                SqlInput.input_uuid,
            )
            .join(
                SqlInput,
                (SqlInput.source_type == "DATASET")
                & (SqlInput.source_id == SqlDataset.dataset_uuid)
                & (SqlInput.destination_type == "RUN"),
            )
            .join(SqlRun, SqlRun.run_uuid == SqlInput.destination_id)
            .filter(SqlDataset.dataset_source_type == SOURCE_TYPE, SqlRun.lifecycle_stage == ACTIVE)
        )
        if wanted is not None:
            query = query.filter(SqlRun.run_uuid.in_(wanted))
        if digest is not None:
            query = query.filter(SqlDataset.digest == digest)
        if experiment_ids is not None:
            query = query.filter(SqlRun.experiment_id.in_([int(e) for e in experiment_ids]))
        rows = query.all()
        inputs = [row[9] for row in rows]
        contexts: dict[str, str] = {}
        for start in range(0, len(inputs), 500):
            for input_uuid, value in (
                session.query(SqlInputTag.input_uuid, SqlInputTag.value)
                .filter(
                    SqlInputTag.input_uuid.in_(inputs[start : start + 500]),
                    SqlInputTag.name == CONTEXT_TAG,
                )
                .all()
            ):
                contexts[input_uuid] = value
    uses = [
        DatasetUse(
            dataset_uuid=row[0],
            experiment_id=str(row[1]),
            name=row[2],
            digest=row[3],
            source=row[4],
            schema=row[5],
            profile=row[6],
            run_uuid=row[7],
            run_start=row[8],
            context=contexts.get(row[9]),
        )  # fmt: skip
        for row in rows
    ]
    return sorted(uses, key=lambda u: (u.run_start or 0, u.run_uuid, u.name))


def run_lineage_tags(
    session_maker: SessionMaker, run_uuids: Iterable[str]
) -> dict[str, dict[str, str]]:
    """The Synergos and parent tags of runs, by run: enough to place each in its federation."""
    from mlflow.store.tracking.dbmodels.models import SqlTag

    from synergos_mlops.federation import TAG_PARTICIPANT, TAG_ROLE, TAG_RUN

    wanted = list(dict.fromkeys(run_uuids))
    keys = (TAG_PARTICIPANT, TAG_ROLE, TAG_RUN, PARENT_TAG)
    out: dict[str, dict[str, str]] = {run: {} for run in wanted}
    with session_maker() as session:
        for start in range(0, len(wanted), 500):
            for run_uuid, key, value in (
                session.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
                .filter(SqlTag.run_uuid.in_(wanted[start : start + 500]), SqlTag.key.in_(keys))
                .all()
            ):
                out[run_uuid][key] = value
    return out


def _model_rows(session: Any, condition: Any) -> list[ModelRow]:
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel

    rows = (
        session.query(
            SqlLoggedModel.model_id,
            SqlLoggedModel.name,
            SqlLoggedModel.source_run_id,
            SqlLoggedModel.experiment_id,
            SqlLoggedModel.status,
            SqlLoggedModel.creation_timestamp_ms,
        )
        .filter(condition)
        .all()
    )
    return [ModelRow(r[0], r[1], r[2], str(r[3]), _status(r[4]), r[5]) for r in rows]


def logged_models(session_maker: SessionMaker, run_uuids: Iterable[str]) -> list[ModelRow]:
    """MLflow logged models whose source run is one of ``run_uuids``."""
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel

    wanted = list(run_uuids)
    if not wanted:
        return []
    with session_maker() as session:
        rows = _model_rows(
            session,
            SqlLoggedModel.source_run_id.in_(wanted) & (SqlLoggedModel.lifecycle_stage == ACTIVE),
        )
    return sorted(rows, key=lambda m: (m.creation_time or 0, m.model_id))


def _status(value: Any) -> str | None:
    if value is None:
        return None
    try:
        from mlflow.entities import LoggedModelStatus

        return str(LoggedModelStatus.from_int(int(value)))
    except Exception:  # noqa: BLE001 - a status this MLflow does not know: shown as stored
        return str(value)


def _version_rows(session: Any, condition: Any) -> list[ModelVersionRow]:
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    rows = (
        session.query(
            SqlModelVersion.name,
            SqlModelVersion.version,
            SqlModelVersion.run_id,
            SqlModelVersion.source,
            SqlModelVersion.status,
            SqlModelVersion.creation_time,
        )
        .filter(condition, SqlModelVersion.current_stage != "Deleted_Internal")
        .all()
    )
    return [ModelVersionRow(r[0], int(r[1]), r[2], _model_of(r[3]), r[3], r[4], r[5]) for r in rows]


def _model_of(source: str | None) -> str | None:
    """MLflow 3 keeps a version's logged model only in its source, ``models:/<model id>``."""
    if source and source.startswith(MODEL_URI) and "/" not in source[len(MODEL_URI) :]:
        return source[len(MODEL_URI) :]
    return None


def model_versions(
    session_maker: SessionMaker, run_uuids: Iterable[str], model_ids: Iterable[str] = ()
) -> list[ModelVersionRow]:
    """Registered model versions whose source run is one of ``run_uuids`` or whose model is
    one of ``model_ids``."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
    from sqlalchemy import or_

    runs, models = list(run_uuids), list(model_ids)
    if not runs and not models:
        return []
    with session_maker() as session:
        rows = _version_rows(
            session,
            or_(
                SqlModelVersion.run_id.in_(runs),
                SqlModelVersion.source.in_([MODEL_URI + m for m in models]),
            ),
        )
    return sorted(rows, key=lambda v: (v.name, v.version))


def model_version(session_maker: SessionMaker, name: str, version: int) -> ModelVersionRow | None:
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    with session_maker() as session:
        rows = _version_rows(
            session, (SqlModelVersion.name == name) & (SqlModelVersion.version == version)
        )
    return rows[0] if rows else None


def logged_model(session_maker: SessionMaker, model_id: str) -> ModelRow | None:
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel

    with session_maker() as session:
        rows = _model_rows(session, SqlLoggedModel.model_id == model_id)
    return rows[0] if rows else None
