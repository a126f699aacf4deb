"""The trace console: static HTML/CSS/ES modules from cloud/console/, served by the cloud itself at /console.

The page holds no access rules: it calls the API with the key a person logs in with (kept in the tab's
sessionStorage), so it shows exactly what that key's role may read. Its read endpoints are in
cloud/routers/console_api.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from cloud.routers import console_api

CONSOLE_DIR = Path(__file__).resolve().parent / "console"


def install(app: FastAPI) -> None:
    """Mount the console's API router, its static files at /console/ and a redirect from /."""
    app.include_router(console_api.router)
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

    @app.get("/", include_in_schema=False)
    def _to_console() -> RedirectResponse:
        return RedirectResponse("/console/")
