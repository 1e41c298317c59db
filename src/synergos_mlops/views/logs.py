"""A run's log records in its bundle: ``logs.jsonl``, written from the database as the ZIP
reaches it."""

from __future__ import annotations

from typing import Any

from synergos_mlops.views.run_data import ArtifactFile

__all__ = ["bundle_log_entries"]


class _RunLogFile:
    """An artifact repository of one file, ``logs.jsonl``: a run's records as JSON lines,
    written from the database when the ZIP reaches it (``bundle.open_artifact`` fetches it
    into a temporary folder, so memory does not grow with the number of records)."""

    def __init__(
        self, engine: Any, ids: tuple[str, str, str, str], visible: Any, participants: Any
    ) -> None:
        self._engine = engine
        self._ids = ids
        self._visible = visible
        self._participants = participants

    def download_artifacts(self, artifact_path: str, dst_path: str) -> str:
        import json
        import os

        from synergos_mlops.storage.logs import iter_run_records

        target = os.path.join(dst_path, os.path.basename(artifact_path))
        with open(target, "w", encoding="utf-8") as out:
            for record in iter_run_records(
                self._engine, self._ids, visible=self._visible, participants=self._participants
            ):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return target


def bundle_log_entries(
    engine: Any, run: Any, participant: str | None = None, *, visible: list[str] | None = None
) -> list[tuple[str, Any]]:
    """``logs.jsonl`` for a run's bundle (the records of ``visible`` participants, None:
    all), or for one participant's bundle (its records only); nothing when there are none,
    or when the database has no log table (a store folder that never held a log record)."""
    from sqlalchemy import inspect

    from synergos_mlops.storage.logs import LogQuery, read_records
    from synergos_mlops.storage.schema import logs

    if engine is None or not inspect(engine).has_table(logs.name):
        return []
    ids = (run.ids.collaboration, run.ids.project, run.ids.experiment, run.run_id)
    only = None if participant is None else [participant]
    first = LogQuery(*ids, participants=only, visible=visible, after=0, limit=1)
    if not read_records(engine, first)[0]:
        return []
    repo = _RunLogFile(engine, ids, visible, only)
    return [("logs.jsonl", ArtifactFile(repo, "logs.jsonl", "logs.jsonl", None))]
