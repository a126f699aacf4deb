"""Browser-facing security headers on every response of the cloud (issue 13).

Every response: ``X-Content-Type-Options: nosniff`` (an API answer is never re-read as HTML or script),
``Referrer-Policy: no-referrer`` (console URLs carry device and batch ids) and ``X-Frame-Options: DENY``
(no clickjacking of the console). A Content-Security-Policy too: for HTML, the console's strict policy: only
its own scripts, styles and API (no inline script or style attribute, nothing from elsewhere, no framing);
for anything else ``default-src 'none'``. FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a
CDN with an inline bootstrap script, so they get a policy that allows exactly that and nothing for the
console pages depends on it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PATHS = ("/docs", "/redoc")
_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'none'; script-src 'self' 'unsafe-inline' {_CDN}; style-src 'self' 'unsafe-inline' {_CDN}; "
    f"img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'"
)
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def policy_for(path: str, content_type: str) -> str:
    """By path first: a 304 revalidating a console page has no content type, and the browser applies the
    304's policy to the cached page (with the API's policy the console could load nothing after a reload)."""
    if path.startswith(DOCS_PATHS):
        return DOCS_CSP
    if path == "/console" or path.startswith("/console/") or content_type.startswith("text/html"):
        return CONSOLE_CSP
    return API_CSP


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to the response start, whatever route or error produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", policy_for(path, headers.get("content-type", "")))
            await send(message)

        await self.app(scope, receive, with_headers)
