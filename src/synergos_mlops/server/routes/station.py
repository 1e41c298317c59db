"""The Command Station page, ``/synergos/``: package data served by the same app as the API.

Every view has its own URL built from the ids (``/synergos/runs/<c>/<p>/<e>/<r>``,
``/synergos/catalogue/<c>/<participant>/<digest>``, ``/synergos/models/<name>/<version>``);
each such URL answers with the same ``index.html``, whose ``<base>`` points at ``/synergos/``
so its assets load at any depth. The script is a set of plain ES modules under ``static/js/``
(``main.js`` routes), loaded with ``<script type="module">``: no bundler. MLflow's security
middleware adds X-Frame-Options to these responses like to its own
(``synmlops serve --x-frame-options``).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

__all__ = ["STATIC", "router"]

STATIC = Path(str(resources.files("synergos_mlops.server") / "static"))
router = APIRouter(include_in_schema=False)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@lru_cache(maxsize=1)
def _index() -> str:
    """``index.html``, with every module of ``static/js/`` named for preloading: the browser
    then fetches them side by side at once, instead of one level of imports after another
    (main.js, then what it imports, then what those import) before the page can ask for its
    data."""
    preload = "".join(
        f'<link rel="modulepreload" href="static/js/{module.name}">\n'
        for module in sorted((STATIC / "js").glob("*.js"))
    )
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return html.replace("</head>", preload + "</head>", 1)


def _page(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = _index().replace("__BASE__", f"{root}/synergos/")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/synergos")
def station_root(request: Request) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}/synergos/", status_code=308)


@router.get("/synergos/static/{path:path}")
def station_asset(path: str) -> Response:
    target = (STATIC / path).resolve()
    if not path or not target.is_relative_to(STATIC.resolve()) or not target.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    # Module scripts run only when served with a JavaScript type; the platform's table of
    # types is not trusted for it.
    media_type = _TYPES.get(target.suffix)
    return FileResponse(
        target, media_type=media_type, headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/synergos/")
@router.get("/synergos/{view:path}")
def station_page(request: Request, view: str = "") -> HTMLResponse:
    return _page(request)
