"""What operators and their tools poll: /healthz (alive), /readyz (dependencies up) and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from cloud.deps import LedgerDep
from cloud.metrics_token import authorized
from cloud.readiness import check_dependencies

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Roles: public. The process answers; touches no dependency (systemd/orchestrator liveness)."""
    return {"status": "alive"}


@router.get("/readyz", responses={503: {"description": "a dependency is down: `checks` names it"}})
async def readyz(ledger: LedgerDep) -> JSONResponse:
    """Roles: public. Checks the database, the chain node and the content store (IPFS when configured); 503 when any is
    down, each check saying ok or the error's class (no URLs or messages)."""
    checks = await run_in_threadpool(check_dependencies, ledger)
    ready = all(c.ok for c in checks)
    body = {
        "ready": ready,
        "checks": {c.name: {"ok": c.ok, **({"error": c.error} if c.error else {})} for c in checks},
    }
    return JSONResponse(body, 200 if ready else 503)


@router.get("/metrics", responses={401: {"description": "no or wrong scrape token"}})
async def metrics(request: Request, ledger: LedgerDep, authorization: str | None = Header(None)) -> Response:
    """Roles: none; the scrape token (CT_CLOUD_METRICS_TOKEN_FILE, `Authorization: Bearer …`), not an API key.
    Prometheus text format."""
    if not authorized(authorization, request.app.state.metrics_token):
        return JSONResponse({"detail": "metrics need the scrape token"}, 401, headers={"WWW-Authenticate": "Bearer"})
    payload = await run_in_threadpool(generate_latest, ledger.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
