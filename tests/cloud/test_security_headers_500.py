"""Every response carries the security headers, the 500 of an unhandled exception too: Starlette's
ServerErrorMiddleware answers it outside every middleware the app adds, so the headers must wrap the whole stack."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cloud.app import create_app
from cloud.security_headers import API_CSP, COMMON
from tests.cloud.cloud_testkit import make_settings


def test_an_unhandled_exception_answers_500_with_the_security_headers(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))

    @app.get("/test-only/boom")  # a route of this test's app only, never of production code
    def boom() -> None:
        raise RuntimeError("unhandled, on purpose")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/test-only/boom")
        assert r.status_code == 500
        for name, value in COMMON.items():
            assert r.headers.get(name) == value, (name, dict(r.headers))
        assert r.headers.get("Content-Security-Policy") == API_CSP
        assert "unhandled, on purpose" not in r.text
        ok = client.get("/api/v1/platforms")  # and the app goes on answering, with the headers
        assert ok.status_code == 200 and ok.headers.get("X-Frame-Options") == "DENY"
