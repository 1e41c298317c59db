"""MLflow's JSON answers as an account bound to participants may see them.

Every list loses the items that come from another participant's run: runs, metrics, logged
models, model versions, registered models whose versions all do, dataset summaries only such
runs used, artifact folders. An object outside a list that does (the one model version a
route was asked for, say) makes the whole answer a 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from synergos_mlops.server.auth._visibility import Visibility

__all__ = ["Hidden", "prune"]

_RUN_KEYS = ("run_id", "run_uuid", "runId", "runUuid")
_SOURCE_RUN_KEYS = ("source_run_id", "sourceRunId")
_MODEL_KEYS = ("model_id", "modelId")
_URI_KEYS = ("source", "path", "artifact_uri", "artifactUri", "artifact_location")
_REGISTERED_MODEL_KEYS = ("latest_versions", "latestVersions", "aliases", "creation_timestamp",
                          "creationTimestamp")  # fmt: skip


class Hidden(Exception):
    """The answer is about something the account may not see."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _tags_of(item: dict[str, Any]) -> dict[str, str] | None:
    data = item.get("data")
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, list):
        return None
    return {str(t.get("key")): str(t.get("value")) for t in tags if isinstance(t, dict)}


def _run_hidden(visibility: Visibility, item: dict[str, Any]) -> str | None:
    info = item.get("info")
    for holder in (info, item):
        if not isinstance(holder, dict):
            continue
        for key in _RUN_KEYS:
            run_id = holder.get(key)
            if not isinstance(run_id, str) or not run_id:
                continue
            experiment_id = holder.get("experiment_id") or holder.get("experimentId")
            tags = _tags_of(item) if holder is info else None
            if experiment_id is not None and tags is not None:
                hidden = visibility.hidden_by_tags(str(experiment_id), tags)
            else:
                hidden = visibility.hidden(run_id)
            if hidden:
                return f"Run '{run_id}'"
        for key in _SOURCE_RUN_KEYS:
            run_id = holder.get(key)
            if isinstance(run_id, str) and run_id and visibility.hidden(run_id):
                return f"Run '{run_id}'"
        for key in _MODEL_KEYS:
            model_id = holder.get(key)
            if isinstance(model_id, str) and model_id and visibility.model_hidden(model_id):
                return f"Logged model '{model_id}'"
    return None


def hidden_item(visibility: Visibility, item: Any, registry: bool) -> str | None:
    """What makes ``item`` another participant's (None: the account may see it)."""
    if not isinstance(item, dict):
        return None
    found = _run_hidden(visibility, item)
    if found is not None:
        return found
    for key in _URI_KEYS:
        value = item.get(key)
        if isinstance(value, str) and value:
            found = visibility.named_hidden(value)
            if found is not None:
                return found
    experiment_id = item.get("experiment_id") or item.get("experimentId")
    name, digest = item.get("name"), item.get("digest")
    if (
        experiment_id is not None
        and isinstance(name, str)
        and isinstance(digest, str)
        and visibility.dataset_hidden(str(experiment_id), name, digest)
    ):
        return f"Dataset '{name}'"
    if (
        registry
        and isinstance(name, str)
        and "version" not in item
        and any(key in item for key in _REGISTERED_MODEL_KEYS)
        and visibility.registered_model_hidden(name)
    ):
        return f"Registered model '{name}'"
    return None


def prune(visibility: Visibility, node: Any, *, registry: bool, in_list: bool = False) -> Any:
    """``node`` without what the account may not see; :class:`Hidden` when ``node`` (not an
    item of a list) is itself hidden."""
    if isinstance(node, dict):
        if not in_list:
            what = hidden_item(visibility, node, registry)
            if what is not None:
                raise Hidden(what)
        return {key: prune(visibility, value, registry=registry) for key, value in node.items()}
    if isinstance(node, list):
        return [
            prune(visibility, item, registry=registry, in_list=True)
            for item in node
            if hidden_item(visibility, item, registry) is None
        ]
    return node
