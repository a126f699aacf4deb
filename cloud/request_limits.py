"""Bounds on every request body, enforced before any route or parser sees a byte.

One pure ASGI middleware reads the body up to its route's size limit (413 past it, declared or streamed) and,
for a body the app would parse as JSON, rejects nesting deeper than the protocol's strict-JSON limit (400) with
the same byte scan carbontrace_protocol.strict_json uses, and a body without one meaning (a duplicate key, NaN,
a lone surrogate: 400 ambiguous_json; the last crashed the database write with a 500). The depth scan has to
come first: the C JSON parser recurses once per level, and a few hundred kilobytes of ``[`` overflowed the stack
and killed the process (issue 13). The body is then replayed to the app unchanged, so routes read it as usual.

Size rule: one table, from settings: the batch upload (a CBOR blob, never JSON-scanned) may be
``max_batch_bytes``; every other route ``max_body_bytes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carbontrace_protocol import strict_json
from cloud.settings import Settings

BATCH_UPLOAD_PATH = "/api/v1/batches"


@dataclass(frozen=True)
class BodyRule:
    max_bytes: int
    # False for routes whose body is not JSON (a CBOR batch): its bytes may be any value, [ and { included.
    json: bool = True


@dataclass(frozen=True)
class BodyRules:
    default: BodyRule
    by_path: dict[str, BodyRule]
    max_depth: int = strict_json.DEFAULT_MAX_DEPTH

    def for_path(self, path: str) -> BodyRule:
        return self.by_path.get(path.rstrip("/") or "/", self.default)


def rules_from_settings(settings: Settings) -> BodyRules:
    return BodyRules(
        default=BodyRule(settings.max_body_bytes),
        by_path={BATCH_UPLOAD_PATH: BodyRule(settings.max_batch_bytes, json=False)},
    )


def _parsed_as_json(content_type: str) -> bool:
    """FastAPI parses a body as JSON when it has no content type or an application/json or +json one; the scan
    also covers anything else claiming json, since a route may call request.json() itself."""
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or "json" in media


class _Reject(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class RequestLimits:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it buffers nothing itself beyond the limit it enforces)."""

    def __init__(self, app: ASGIApp, rules: BodyRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rules.for_path(scope["path"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read(receive, headers.get("content-length"), rule.max_bytes)
            json_body = rule.json and body and _parsed_as_json(headers.get("content-type", ""))
            if json_body and strict_json.exceeds_depth(body, self.rules.max_depth):
                raise _Reject(400, "too_deep", f"JSON nesting deeper than {self.rules.max_depth}")
            if json_body:
                _one_meaning(body)
        except _Reject as err:
            await _send_error(send, err)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _read(receive: Receive, declared: str | None, limit: int) -> bytes:
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _Reject(413, "too_large", f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Reject(400, "disconnected", "client disconnected before the body ended")
            body += message.get("body", b"")
            if len(body) > limit:
                raise _Reject(413, "too_large", f"body exceeds the limit of {limit} bytes")
            if not message.get("more_body", False):
                return bytes(body)


def _one_meaning(body: bytes) -> None:
    """A JSON body is read with the strict rules (carbontrace_protocol.strict_json): one a plain parser reads but
    not to one meaning (a duplicate key, NaN, a lone surrogate, which no database can store) is 400
    ambiguous_json before any route sees it. Text that is not JSON at all goes on to the app's own answer."""
    try:
        strict_json.loads(body)
    except strict_json.AmbiguousJSON as err:
        raise _Reject(400, "ambiguous_json", str(err)) from err
    except strict_json.StrictJSONError:
        pass  # not JSON (or not UTF-8): the route's parser refuses it with its own 4xx


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server's receive does

    return replayed


async def _send_error(send: Send, err: _Reject) -> None:
    payload = json.dumps({"error": err.error, "detail": err.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            # The unread rest of an oversized body is not drained: close the connection instead.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
