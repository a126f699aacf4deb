"""One JSON log line and one latency observation per HTTP request (pure ASGI middleware).

The line names the request id (the caller's X-Request-ID when it is a plain token, else a new one; echoed in the
response), method, route template, status and duration. Never a header, a body or a query string: API keys and
bearer tokens travel in headers, so no secret can reach the log from here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carbontrace_host.logs import fields
from cloud.metrics import CloudMetrics

log = logging.getLogger("carbontrace.cloud.request")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "unmatched"  # no route: one label for every unknown path, so scanners cannot grow the metric
# The server accepts any token as a method; the metric's label takes these or OTHER, for the same reason.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            candidate = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: CloudMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500  # an exception before the response started is the server error Starlette answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.metrics.request_duration.labels(method, route, str(status)).observe(elapsed)
            level = logging.ERROR if status >= 500 else logging.INFO
            log.log(level, "request", extra=fields(request_id=request_id, method=scope["method"], route=route,
                                                   path=scope["path"], status=status,
                                                   duration_ms=round(elapsed * 1000, 2)))
