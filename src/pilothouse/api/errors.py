"""Mapping Pilothouse errors to HTTP responses, at the edge only.

Every error body is ``{"code", "message", "hint"}``; unexpected exceptions
become a 500 with a generic message (details go to the log, never to the
client), and request-validation errors a 422 naming each bad field.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pilothouse import errors

log = structlog.get_logger(__name__)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.PilothouseError)
    async def pilothouse_error(_request: Request, exc: errors.PilothouseError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        body = {"code": "invalid_input", "message": "; ".join(problems), "hint": "fix the request body"}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", path=request.url.path, error_type=type(exc).__name__)
        body = {
            "code": "internal_error",
            "message": "internal error",
            "hint": "see the Pilothouse server log",
        }
        return JSONResponse(body, status_code=500)


def _headers(exc: errors.PilothouseError) -> dict[str, str] | None:
    """What HTTP asks to go with the status: a challenge with 401, the wait with 429."""
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.TooManyAttempts):
        return {"Retry-After": str(exc.retry_after)}
    return None
