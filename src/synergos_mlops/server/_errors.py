"""One JSON error shape for every Synergos route: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

__all__ = ["ApiError", "bounded_body", "error_response"]


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
