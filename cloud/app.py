"""The FastAPI application factory: one Ledger (cloud/ledger.py) per app, the routers, the job worker."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from cloud import chain as chainlib
from cloud import console, validation_errors
from cloud.ledger import build_ledger
from cloud.metrics_token import load_or_create_metrics_token
from cloud.recursion_limit import cap_recursion_limit
from cloud.request_limits import RequestLimits, rules_from_settings
from cloud.request_log import RequestLog
from cloud.routers import audit, batches, gateways, instruments, log, ops, readers, registry, rpc, sites, trace
from cloud.security_headers import SecurityHeaders
from cloud.settings import Settings
from cloud.stored_batches import BlobUnreadable


class CloudApp(FastAPI):
    """FastAPI with the security headers around its whole stack: Starlette's ServerErrorMiddleware (the 500 of
    an unhandled exception) sits outside every middleware added with ``add_middleware``, so the headers wrap it
    here instead."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings | None = None, chain: chainlib.Chain | None = None) -> FastAPI:
    settings = settings or Settings()
    cap_recursion_limit()  # after cloud.chain imported web3/py-evm/py_ecc, which raise it
    ledger = build_ledger(settings, chain)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.jobs_interval_s > 0:
            worker = threading.Thread(target=ledger.run_jobs, name="carbontrace-jobs", daemon=True)
            worker.start()
        try:
            yield
        finally:
            ledger.stop()
            if worker is not None:
                worker.join(timeout=10)
            ledger.engine.dispose()

    app = CloudApp(
        title="CarbonTrace cloud ledger",
        version="0.1.0",
        lifespan=lifespan,
        description="Registry, batch ingestion, append-only Merkle log and on-chain anchors. "
        "Each endpoint names the roles that may call it; any other caller gets 403.",
    )
    app.state.ledger = ledger
    app.state.metrics_token = load_or_create_metrics_token(settings.metrics_token_path)
    for module in (registry, readers, sites, instruments, gateways, batches, audit, log, trace, rpc, ops):
        app.include_router(module.router)
    console.install(app)
    # Outermost of the app's own layers: bodies are bounded before routing, parsing or any handler.
    app.add_middleware(RequestLimits, rules=rules_from_settings(settings))
    # Outside the limits: their 413/400 are logged and timed too (one line and one observation per request).
    app.add_middleware(RequestLog, metrics=ledger.metrics)
    # SecurityHeaders wraps all of it (CloudApp): on the limits' 413/400 and on an unhandled exception's 500 too.
    validation_errors.install(app)

    @app.exception_handler(chainlib.ChainUnavailable)
    async def _chain_down(_request: Request, exc: chainlib.ChainUnavailable) -> JSONResponse:
        ledger.metrics.chain_error(exc)
        return JSONResponse({"error": "chain_unavailable", "detail": "the chain node is unreachable; retry"}, 503)

    @app.exception_handler(chainlib.OperatorUnfunded)
    async def _unfunded(_request: Request, exc: chainlib.OperatorUnfunded) -> JSONResponse:
        ledger.metrics.chain_error(exc)
        return JSONResponse({"error": "operator_unfunded", "detail": "the operator's chain account needs funds"}, 503)

    @app.exception_handler(BlobUnreadable)
    async def _blob_unreadable(_request: Request, exc: BlobUnreadable) -> JSONResponse:
        ledger.metrics.content_store_error("read", exc)
        return JSONResponse({"error": "blob_unavailable", "detail": str(exc)}, 503)

    @app.exception_handler(chainlib.ContractReverted)
    async def _reverted(_request: Request, exc: chainlib.ContractReverted) -> JSONResponse:
        ledger.metrics.chain_error(exc)
        # Only the error's name: its arguments may carry another tenant's on-chain ids.
        return JSONResponse({"error": "contract_reverted", "detail": exc.error_name}, 409)

    return app
