"""What every Synergos route shares: the API prefix, the path parameters, one JSON error shape
(``{"error": {"code": ..., "message": ...}}``) and the mapping of domain errors onto it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Path, Request
from fastapi.responses import JSONResponse

from synergos_mlops.errors import InvalidIdError, StoreError, SynergosError
from synergos_mlops.views.bundle import UnsafePathError
from synergos_mlops.views.federated_runs import NotFoundError

__all__ = [
    "API_PREFIX",
    "ERRORS",
    "MAX_KEYS",
    "RUN",
    "ApiError",
    "Collaboration",
    "Experiment",
    "Participant",
    "Project",
    "RunId",
    "answer",
    "bounded_body",
    "error_response",
    "parse_keys",
]

API_PREFIX = "/api/synergos/v1"

T = TypeVar("T")

Collaboration = Annotated[str, Path(description="Collaboration id")]
Project = Annotated[str, Path(description="Project id")]
Experiment = Annotated[str, Path(description="Experiment id")]
RunId = Annotated[str, Path(description="Run id (one federated cycle)")]
Participant = Annotated[str, Path(description="Participant id")]
RUN = "/runs/{collaboration}/{project}/{experiment}/{run}"

#: MLflow accepts metric keys of letters, digits, ``_ - . / :`` and spaces.
_METRIC_KEY = re.compile(r"^[\w\-./: ]+$")
MAX_KEYS = 200

#: The error answers every read route documents in its OpenAPI ``responses``.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": description,
        "content": {"application/json": {"example": {"error": {"code": name, "message": "..."}}}},
    }
    for code, name, description in (
        (400, "BAD_REQUEST", "A malformed id or parameter"),
        (404, "NOT_FOUND", "The collaboration, project, experiment, run, participant, metric "
         "or artifact named in the message is not there"),
        (503, "UNAVAILABLE", "The stores cannot be read"),
    )
}  # fmt: skip


class ApiError(HTTPException):
    """An error a client caused (4xx) or a store that is not ready (503)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message, **extra}}
    )


async def bounded_body(request: Request, limit: int, what: str) -> bytes:
    """A request's body, refused with 413 once it passes ``limit`` bytes: before a byte is
    read when ``Content-Length`` says so, else as a chunked body arrives."""
    too_large = ApiError(413, "TOO_LARGE", f"{what} may hold {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def answer(work: Callable[[], T]) -> T:
    """Run ``work`` and turn domain errors into the API's JSON errors."""
    try:
        return work()
    except (InvalidIdError, UnsafePathError) as exc:
        raise ApiError(400, "BAD_REQUEST", str(exc)) from None
    except NotFoundError as exc:
        raise ApiError(404, "NOT_FOUND", str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, "UNAVAILABLE", str(exc)) from None
    except SynergosError as exc:
        raise ApiError(400, "BAD_REQUEST", str(exc)) from None


def parse_keys(raw: list[str] | None) -> list[str] | None:
    """The metric keys of repeated or comma-separated ``keys`` parameters (None: all)."""
    if raw is None:
        return None
    keys: list[str] = []
    for item in raw:
        for key in item.split(","):
            key = key.strip()
            if not key:
                raise ApiError(400, "BAD_REQUEST", "keys must not hold an empty metric key")
            if len(key) > 250 or not _METRIC_KEY.match(key):
                raise ApiError(400, "BAD_REQUEST", f"metric key {key[:80]!r} is malformed")
            if key not in keys:
                keys.append(key)
    if len(keys) > MAX_KEYS:
        raise ApiError(400, "BAD_REQUEST", f"at most {MAX_KEYS} metric keys per request")
    return keys
