"""The data catalogue, drift and lineage as the Synergos API shows them.

Everything is read through ``storage.catalogue`` and placed in its federation: a dataset is
used by a participant run, whose parent is the federated run, whose (and whose participants')
logged models and registered model versions come out of it. ``sees(collaboration,
participant)`` and ``readable(experiment_id)`` narrow what an account is shown (both always
true without authentication).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synergos_mlops.catalogue import column_changes
from synergos_mlops.federation import TAG_PARTICIPANT, TAG_RUN
from synergos_mlops.storage import catalogue as store
from synergos_mlops.storage import reads
from synergos_mlops.storage.reads import PARENT_TAG, ExperimentRow
from synergos_mlops.views.federated_runs import Backend, FederatedRun, NotFoundError, iso_time

__all__ = [
    "catalogue",
    "dataset_lineage",
    "dataset_profile",
    "model_lineage",
    "run_datasets",
    "run_lineage",
    "version_left_out",
]

Sees = Callable[[str, str], bool]
Readable = Callable[[str], bool]


@dataclass(frozen=True)
class Placed:
    """A dataset use in its federation."""

    use: store.DatasetUse
    experiment: ExperimentRow
    run: str  # the federated run's Synergos id
    parent_uuid: str
    participant: str

    @property
    def collaboration(self) -> str:
        return self.experiment.collaboration

    @property
    def split(self) -> str | None:
        return self.use.context

    def run_ids(self) -> dict[str, str]:
        e = self.experiment
        return {
            "collaboration": e.collaboration, "project": e.project,
            "experiment": e.experiment, "run": self.run,
        }  # fmt: skip


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _columns(schema_text: str | None) -> list[dict[str, str]]:
    schema = _json(schema_text)
    if not isinstance(schema, dict):
        return []
    synergos = schema.get("synergos") or {}
    datatypes = synergos.get("datatypes")
    if isinstance(datatypes, dict):
        # The headers' order (the worker's column order); the stored JSON's keys are sorted.
        headers = [h for h in synergos.get("headers") or [] if h in datatypes]
        order = headers + sorted(set(datatypes) - set(headers))
        return [{"name": str(k), "type": str(datatypes[k])} for k in order]
    return [
        {"name": str(c.get("name")), "type": str(c.get("type"))}
        for c in schema.get("mlflow_colspec") or []
        if isinstance(c, dict)
    ]


def _place(backend: Backend, uses: list[store.DatasetUse]) -> list[Placed]:
    experiments = {e.experiment_id: e for e in reads.synergos_experiments(backend.session_maker)}
    tags = store.run_lineage_tags(backend.session_maker, [u.run_uuid for u in uses])
    parents = {t.get(PARENT_TAG) for t in tags.values()} - {None}
    parent_tags = store.run_lineage_tags(backend.session_maker, [p for p in parents if p])
    placed = []
    for use in uses:
        experiment = experiments.get(use.experiment_id)
        own = tags.get(use.run_uuid, {})
        parent = own.get(PARENT_TAG)
        participant = own.get(TAG_PARTICIPANT)
        if experiment is None or parent is None or participant is None:
            continue  # not a participant run of a federated experiment
        run = parent_tags.get(parent, {}).get(TAG_RUN, parent)
        placed.append(Placed(use, experiment, run, parent, participant))
    return placed


def _visible(placed: list[Placed], sees: Sees, readable: Readable) -> list[Placed]:
    return [
        p for p in placed
        if readable(p.use.experiment_id) and sees(p.collaboration, p.participant)
    ]  # fmt: skip


def _run_ref(p: Placed, root: str) -> dict[str, Any]:
    from urllib.parse import quote

    ids = p.run_ids()
    path = "/".join(
        quote(ids[k], safe="") for k in ("collaboration", "project", "experiment", "run")
    )
    return {**ids, "start_time": iso_time(p.use.run_start), "api": f"{root}/runs/{path}"}


def _summary(group: list[Placed], root: str) -> dict[str, Any]:
    first, last = group[0], group[-1]
    profile = _json(last.use.profile) or {}
    return {
        "digest": last.use.digest,
        "name": last.use.name,
        "projects": sorted({p.experiment.project for p in group}),
        "kind": profile.get("kind"),
        "rows": profile.get("rows"),
        "src_count": profile.get("src_count"),
        "schema_digest": profile.get("schema_digest"),
        "columns": _columns(last.use.schema),
        "runs": len({p.parent_uuid for p in group}),
        "first_run": _run_ref(first, root),
        "last_run": _run_ref(last, root),
    }


def catalogue(backend: Backend, sees: Sees, readable: Readable, root: str) -> dict[str, Any]:
    """Every dataset by collaboration → participant → split."""
    placed = _visible(_place(backend, store.dataset_uses(backend.session_maker)), sees, readable)
    groups: dict[tuple[str, str, str, str], list[Placed]] = {}
    for p in placed:
        groups.setdefault((p.collaboration, p.participant, p.split or "", p.use.digest), []).append(
            p
        )
    tree: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for (collaboration, participant, split, _), group in sorted(groups.items()):
        entry = _summary(group, root)
        entry["profile"] = (
            f"{root}/catalogue/{_q(collaboration)}/{_q(participant)}/{_q(entry['digest'])}"
        )
        tree.setdefault(collaboration, {}).setdefault(participant, {}).setdefault(split, []).append(
            entry
        )
    return {
        "collaborations": [
            {
                "id": c,
                "participants": [
                    {
                        "id": participant,
                        "splits": [
                            {
                                "split": split or None,
                                "datasets": sorted(
                                    entries, key=lambda d: d["last_run"]["start_time"] or ""
                                ),
                            }
                            for split, entries in sorted(splits.items())
                        ],
                    }
                    for participant, splits in sorted(participants.items())
                ],
            }
            for c, participants in sorted(tree.items())
        ]
    }


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _dataset_uses(
    backend: Backend, collaboration: str, participant: str, digest: str, sees: Sees,
    readable: Readable, *, with_profile: bool = True,
) -> list[Placed]:  # fmt: skip
    found = [
        p
        for p in _place(
            backend,
            store.dataset_uses(backend.session_maker, digest=digest, with_profile=with_profile),
        )
        if p.collaboration == collaboration and p.participant == participant
    ]
    found = _visible(found, sees, readable)
    if not found:
        raise NotFoundError(
            f"dataset {digest!r} of participant {participant!r} not found in collaboration "
            f"{collaboration!r}"
        )
    return found


def dataset_profile(
    backend: Backend, collaboration: str, participant: str, digest: str, sees: Sees,
    readable: Readable, root: str,
) -> dict[str, Any]:  # fmt: skip
    """One dataset: its source, schema, profile (the participant's summary) and its runs."""
    found = _dataset_uses(backend, collaboration, participant, digest, sees, readable)
    last = found[-1]
    return {
        "collaboration": collaboration,
        "participant": participant,
        "digest": digest,
        "name": last.use.name,
        "splits": sorted({p.split for p in found if p.split}),
        "source_type": store.SOURCE_TYPE,
        "source": _json(last.use.source),
        "schema": _json(last.use.schema),
        "profile": _json(last.use.profile),
        "runs": [_run_ref(p, root) for p in found],
    }


# --- a run's datasets and drift ------------------------------------------------------------


def _entry(p: Placed) -> tuple[str | None, dict[str, Any], dict[str, str]]:
    profile = _json(p.use.profile) or {}
    schema = _json(p.use.schema) or {}
    datatypes = (schema.get("synergos") or {}).get("datatypes") if isinstance(schema, dict) else {}
    metadata = profile.get("metadata") if isinstance(profile, dict) else {}
    return (
        profile.get("kind") if isinstance(profile, dict) else None,
        metadata if isinstance(metadata, dict) else {},
        datatypes if isinstance(datatypes, dict) else {},
    )


def _drift(before: Placed, after: Placed, against: str, other: Placed, root: str) -> dict[str, Any]:
    old, new = _entry(before), _entry(after)
    old_schema = (_json(before.use.profile) or {}).get("schema_digest")
    new_schema = (_json(after.use.profile) or {}).get("schema_digest")
    return {
        "participant": before.participant,
        "split": before.split,
        "against": against,
        "run": _run_ref(other, root),
        "digest_before": before.use.digest,
        "digest_after": after.use.digest,
        "schema_changed": old_schema != new_schema,
        "profile_changed": old[1] != new[1],
        "columns": column_changes(old, new),
    }


def _dataset_json(p: Placed, root: str) -> dict[str, Any]:
    """One participant's dataset as a run's datasets and its lineage list it."""
    profile = _json(p.use.profile) or {}
    return {
        "participant": p.participant,
        "split": p.split,
        "digest": p.use.digest,
        "name": p.use.name,
        "kind": profile.get("kind"),
        "rows": profile.get("rows"),
        "columns": _columns(p.use.schema),
        "mlflow_run_id": p.use.run_uuid,
        "profile": f"{root}/catalogue/{_q(p.collaboration)}/{_q(p.participant)}/{_q(p.use.digest)}",
    }


def run_datasets(backend: Backend, run: FederatedRun, root: str) -> dict[str, Any]:
    """The datasets of a run's (visible) participants, and drift against the project's
    previous and next runs that catalogued the same participant's split."""
    project = [
        e for e in reads.synergos_experiments(backend.session_maker)
        if e.collaboration == run.ids.collaboration and e.project == run.ids.project
    ]  # fmt: skip
    placed = _place(
        backend,
        store.dataset_uses(
            backend.session_maker, experiment_ids=[e.experiment_id for e in project]
        ),
    )
    visible = {p.synergos_id for p in run.participants}
    mine = [p for p in placed if p.parent_uuid == run.parent.run_uuid and p.participant in visible]
    datasets = [_dataset_json(p, root) for p in mine]
    # Per participant and split: the last dataset of each run, runs in time order.
    series: dict[tuple[str, str | None], dict[str, Placed]] = {}
    for p in placed:
        series.setdefault((p.participant, p.split), {})[p.parent_uuid] = p
    drift: list[dict[str, Any]] = []
    for p in mine:
        timeline = sorted(
            series[(p.participant, p.split)].values(),
            key=lambda x: (x.use.run_start or 0, x.parent_uuid),
        )
        at = next(i for i, x in enumerate(timeline) if x.parent_uuid == p.parent_uuid)
        here = timeline[at]
        if here.use.digest != p.use.digest:
            continue  # an earlier dataset of the same split in this run: its last one counts
        if at > 0 and timeline[at - 1].use.digest != here.use.digest:
            drift.append(_drift(timeline[at - 1], here, "previous", timeline[at - 1], root))
        if at + 1 < len(timeline) and timeline[at + 1].use.digest != here.use.digest:
            drift.append(_drift(here, timeline[at + 1], "next", timeline[at + 1], root))
    return {"run": run.run_id, "datasets": datasets, "drift": drift}


# --- lineage ---------------------------------------------------------------------------------


def _model_json(model: store.ModelRow, owner: str | None) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "name": model.name,
        "source_run_id": model.source_run_id,
        "participant": owner,
        "status": model.status,
        "uri": f"models:/{model.model_id}",
        "created": iso_time(model.creation_time),
    }


def _version_json(version: store.ModelVersionRow) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": str(version.version),
        "run_id": version.run_id,
        "model_id": version.model_id,
        "source": version.source,
        "status": version.status,
        "uri": f"models:/{version.name}/{version.version}",
        "created": iso_time(version.creation_time),
    }


def version_left_out(backend: Backend, run: FederatedRun, version: dict[str, Any]) -> bool:
    """Whether a model version (as :func:`_version_json` shows it) comes from a participant
    run of ``run`` that the account does not see: its run, or its logged model's source run,
    is a participant of the federated run that ``run`` (narrowed by the account) left out."""
    sources = [version.get("run_id")]
    if version.get("model_id"):
        model = store.logged_model(backend.session_maker, version["model_id"])
        sources.append(model.source_run_id if model is not None else None)
    wanted = [s for s in sources if s and s not in run.run_uuids]
    tags = store.run_lineage_tags(backend.session_maker, wanted)
    return any(tags[s].get(PARENT_TAG) == run.parent.run_uuid for s in wanted)


def run_lineage(backend: Backend, run: FederatedRun, root: str) -> dict[str, Any]:
    """Datasets → participant runs → the federated run → logged models → model versions."""
    uses = _place(backend, store.dataset_uses(
        backend.session_maker, run_uuids=[p.run_uuid for p in run.participants]
    ))  # fmt: skip
    models = store.logged_models(backend.session_maker, run.run_uuids)
    versions = [
        v
        for v in store.model_versions(
            backend.session_maker, run.run_uuids, [m.model_id for m in models]
        )
        if not version_left_out(backend, run, _version_json(v))
    ]
    run_node = f"run:{run.parent.run_uuid}"
    nodes: list[dict[str, Any]] = [{"id": run_node, "type": "federated_run", "label": run.run_id}]
    edges: list[list[str]] = []
    for row in run.participants:
        node = f"participant_run:{row.run_uuid}"
        nodes.append({"id": node, "type": "participant_run", "label": row.synergos_id})
        edges.append([node, run_node])
    datasets = []
    for p in uses:
        node = f"dataset:{p.collaboration}/{p.participant}/{p.use.digest}"
        if not any(n["id"] == node for n in nodes):
            nodes.append({"id": node, "type": "dataset", "label": p.use.name})
        edges.append([node, f"participant_run:{p.use.run_uuid}"])
        datasets.append(_dataset_json(p, root))
    model_json = []
    for m in models:
        owner = run.owner_of(m.source_run_id)
        node = f"model:{m.model_id}"
        nodes.append({"id": node, "type": "logged_model", "label": m.name})
        source = run_node if owner is None else f"participant_run:{m.source_run_id}"
        edges.append([source, node])
        model_json.append(_model_json(m, owner))
    version_json = []
    for v in versions:
        node = f"model_version:{v.name}/{v.version}"
        nodes.append({"id": node, "type": "model_version", "label": f"{v.name} v{v.version}"})
        if v.model_id and any(m.model_id == v.model_id for m in models):
            edges.append([f"model:{v.model_id}", node])
        else:
            owner_run = (
                run_node if v.run_id == run.parent.run_uuid else f"participant_run:{v.run_id}"
            )
            edges.append([owner_run, node])
        version_json.append(_version_json(v))
    return {
        "run": {
            "collaboration": run.ids.collaboration,
            "project": run.ids.project,
            "experiment": run.ids.experiment,
            "run": run.run_id,
            "mlflow_experiment_id": run.experiment_id,
            "mlflow_run_id": run.parent.run_uuid,
            "status": run.parent.status,
            "start_time": iso_time(run.parent.start_time),
            "end_time": iso_time(run.parent.end_time),
        },  # fmt: skip
        "participants": [
            {
                "id": p.synergos_id,
                "mlflow_run_id": p.run_uuid,
                "status": p.status,
                "start_time": iso_time(p.start_time),
                "end_time": iso_time(p.end_time),
            }  # fmt: skip
            for p in run.participants
        ],
        "datasets": datasets,
        "models": model_json,
        "model_versions": version_json,
        "nodes": nodes,
        "edges": edges,
    }


def federated_run_of(backend: Backend, run_uuid: str) -> tuple[ExperimentRow, str] | None:
    """The experiment and the Synergos run id of the federated run an MLflow run belongs to
    (itself, or its parent for a participant's run)."""
    from synergos_mlops.federation import ROLE_PARTICIPANT, TAG_ROLE

    tags = store.run_lineage_tags(backend.session_maker, [run_uuid]).get(run_uuid, {})
    if tags.get(TAG_ROLE) == ROLE_PARTICIPANT and tags.get(PARENT_TAG):
        run_uuid = tags[PARENT_TAG]
        tags = store.run_lineage_tags(backend.session_maker, [run_uuid]).get(run_uuid, {})
    if TAG_RUN not in tags:
        return None
    experiments = {e.experiment_id: e for e in reads.synergos_experiments(backend.session_maker)}
    from mlflow.store.tracking.dbmodels.models import SqlRun

    with backend.session_maker() as session:
        row = session.query(SqlRun.experiment_id).filter(SqlRun.run_uuid == run_uuid).first()
    if row is None or str(row[0]) not in experiments:
        return None
    return experiments[str(row[0])], tags[TAG_RUN]


def model_version_source(backend: Backend, name: str, version: int) -> tuple[dict[str, Any], str]:
    """A registered model version and the MLflow run it came from (NotFoundError otherwise)."""
    found = store.model_version(backend.session_maker, name, version)
    if found is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    run_uuid = found.run_id
    if not run_uuid and found.model_id:
        model = store.logged_model(backend.session_maker, found.model_id)
        run_uuid = model.source_run_id if model is not None else None
    if not run_uuid:
        raise NotFoundError(f"version {version} of model {name!r} names no source run")
    return _version_json(found), run_uuid


def dataset_lineage(
    backend: Backend, collaboration: str, participant: str, digest: str, sees: Sees,
    readable: Readable, root: str,
) -> dict[str, Any]:  # fmt: skip
    """The runs a participant's dataset took part in, and the models and model versions
    that came out of them."""
    found = _dataset_uses(backend, collaboration, participant, digest, sees, readable,
                          with_profile=False)  # fmt: skip
    runs: dict[str, dict[str, Any]] = {}
    for p in found:
        entry = runs.setdefault(p.parent_uuid, {**_run_ref(p, root), "splits": [],
                                                "participant_run_id": p.use.run_uuid})  # fmt: skip
        if p.split and p.split not in entry["splits"]:
            entry["splits"].append(p.split)
    for parent_uuid, entry in runs.items():
        sources = [parent_uuid, entry["participant_run_id"]]
        models = store.logged_models(backend.session_maker, sources)
        entry["mlflow_run_id"] = parent_uuid
        entry["models"] = [
            _model_json(m, None if m.source_run_id == parent_uuid else participant) for m in models
        ]
        entry["model_versions"] = [
            _version_json(v)
            for v in store.model_versions(
                backend.session_maker, sources, [m.model_id for m in models]
            )
        ]
    return {
        "dataset": {
            "collaboration": collaboration,
            "participant": participant,
            "digest": digest,
            "name": found[-1].use.name,
            "profile": f"{root}/catalogue/{_q(collaboration)}/{_q(participant)}/{_q(digest)}",
        },  # fmt: skip
        "runs": list(runs.values()),
        "models": [m for r in runs.values() for m in r["models"]],
        "model_versions": [v for r in runs.values() for v in r["model_versions"]],
    }


def model_lineage(
    backend: Backend, run: FederatedRun, version: dict[str, Any], root: str
) -> dict[str, Any]:
    """Which data trained a model version: its run's lineage, with the version first."""
    return {"model_version": version, **run_lineage(backend, run, root)}
