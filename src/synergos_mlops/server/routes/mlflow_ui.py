"""MLflow's UI page, opening federated experiments on their training runs.

MLflow 3.17's UI decides what an experiment page shows from a global *workflow type*
(``genai`` or ``machine_learning``), not from the experiment's ``mlflow.experimentKind`` tag:
its bundle has the feature flag that reads the tag switched off in favour of the workflow type,
which comes from the page's ``?workflowType=`` query, else the browser's localStorage key
``mlflow.workflowType_v1``, else ``genai`` — the GenAI overview of traces, with the assistant
panel popping open on the first visit. Every experiment here is federated learning, so
``/`` serves MLflow's own ``index.html`` with a few lines that, before MLflow's script runs,
make ``machine_learning`` the default and keep the assistant closed on the first visit. Only
absent keys are written: a user who switches to GenAI in the UI keeps that choice.

``synmlops serve`` turns MLflow's telemetry off (``MLFLOW_DISABLE_TELEMETRY=true`` unless set
otherwise), but MLflow's UI does not ask the server: it shows an "Information about UI
telemetry" banner until dismissed and, with its own setting on, starts a worker that sends UI
events. When telemetry is off (``MLFLOW_DISABLE_TELEMETRY`` or ``DO_NOT_TRACK`` true), the page
also makes the UI's telemetry setting off and its banner dismissed, again only where absent.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = [
    "BOOT_DEFAULTS",
    "TELEMETRY_OFF_DEFAULTS",
    "boot_defaults",
    "router",
    "telemetry_disabled",
]

#: localStorage keys (MLflow's ``<key>_v<version>``, JSON values) set when absent.
BOOT_DEFAULTS: dict[str, str] = {
    "mlflow.workflowType_v1": '"machine_learning"',
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
}

#: Set when absent, in addition, while telemetry is off.
TELEMETRY_OFF_DEFAULTS: dict[str, str] = {
    "mlflow.settings.telemetry.enabled_v1": "false",
    "mlflow.telemetry.info.alert.dismissed_v1": "true",
}

router = APIRouter()


def telemetry_disabled() -> bool:
    """Whether this server runs with MLflow's telemetry off (read when the page is served)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
        for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    )


def boot_defaults() -> dict[str, str]:
    """The localStorage keys the page sets when absent, with their JSON values."""
    return {**BOOT_DEFAULTS, **(TELEMETRY_OFF_DEFAULTS if telemetry_disabled() else {})}


@functools.cache
def _index_html(defaults: tuple[tuple[str, str], ...]) -> str | None:
    import mlflow.server

    index = Path(mlflow.server.__file__).parent / "js" / "build" / "index.html"
    if not index.is_file():
        return None
    lines = "".join(
        f"if(s.getItem({key!r})===null)s.setItem({key!r},{value!r});" for key, value in defaults
    )
    boot = f"<script>try{{var s=window.localStorage;{lines}}}catch(e){{}}</script>"
    return index.read_text().replace("<head>", f"<head>{boot}", 1)


@router.get("/", include_in_schema=False, response_model=None)
def mlflow_ui() -> HTMLResponse:
    html = _index_html(tuple(boot_defaults().items()))
    if html is None:  # a source checkout of MLflow without its built UI: let MLflow answer
        from fastapi import HTTPException

        raise HTTPException(status_code=404, detail="MLflow's UI is not built")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})
