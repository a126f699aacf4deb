"""422 answers that name what is wrong without echoing the request back.

FastAPI's default RequestValidationError handler returns each error's ``input`` (and ``ctx``, which can quote
it): a large invalid body came back whole, and an echoed value is one more place a secret can leak. This one
keeps the location, type and message of each error, at most ``MAX_ERRORS`` of them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_ERRORS = 20
_MAX_MESSAGE = 200


def _summary(error: dict[str, object]) -> dict[str, object]:
    loc = error.get("loc", ())
    parts = loc if isinstance(loc, tuple | list) else ()
    return {
        "loc": [part if isinstance(part, int) else str(part)[:64] for part in parts],
        "type": str(error.get("type", ""))[:64],
        # pydantic's messages are built from the schema (limits, expected types), not from the input.
        "msg": str(error.get("msg", ""))[:_MAX_MESSAGE],
    }


async def _handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    body: dict[str, object] = {"error": "invalid_request", "detail": [_summary(e) for e in errors[:MAX_ERRORS]]}
    if len(errors) > MAX_ERRORS:
        body["more_errors"] = len(errors) - MAX_ERRORS
    return JSONResponse(body, 422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _handler)
