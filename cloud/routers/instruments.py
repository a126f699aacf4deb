"""Contractual instruments of a site (certificates and contracts for market-based Scope 2): the enterprise
registers each for one of its own sites; statements carry those whose delivery overlaps their period
(carbontrace_protocol/market_based.py). Who may do what is cloud/access_scope.py (INSTRUMENT_RECORD,
INSTRUMENT_REGISTER)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from carbontrace_protocol.instruments import InstrumentError, parse_instrument
from cloud import access_scope, models
from cloud.deps import LedgerDep, SessionDep, forbidden
from cloud.instrument_records import instrument_of, overlapping
from cloud.routers.trace import CallerDep
from cloud.security import Principal

router = APIRouter(prefix="/api/v1", tags=["instruments"])
_SITE_ID = r"^[A-Za-z0-9._-]{1,64}$"


def _answer(row: models.ContractualInstrument) -> dict[str, Any]:
    return {"record": instrument_of(row).to_json(), "record_sha256": row.record_sha256,
            "registered_at": row.registered_at}


def _site(session: Session, principal: Principal | None, site_id: str, surface: access_scope.Surface) -> models.Site:
    """The site if the caller may use ``surface`` for it. 401 without a key; 403 for another tenant's site and,
    so that nothing is probed, for one that does not exist, except to a caller who may see every tenant's
    (404)."""
    if principal is None:
        raise HTTPException(401, "API key required", headers={"WWW-Authenticate": "Bearer"})
    scope = access_scope.surface_scope(principal, surface)
    site = session.get(models.Site, site_id)
    if site is None:
        if scope == access_scope.TenantScope.ANY:
            raise HTTPException(404, "no such site")
        raise forbidden()
    if principal.pending or not access_scope.may_see_own_or_any(principal, surface, site.enterprise_id):
        raise forbidden()
    return site


@router.post(
    "/sites/{site_id}/instruments",
    status_code=201,
    responses={
        201: {"description": "registered: the canonical record and its sha256"},
        409: {"description": "the same instrument (issuer and id) is registered for an overlapping delivery"},
        422: {"description": "not an instrument record (the reason names the field)"},
    },
)
def register_instrument(
    site_id: Annotated[str, Path(pattern=_SITE_ID)],
    principal: CallerDep,
    ledger: LedgerDep,
    body: Annotated[Any, Body()] = None,
) -> JSONResponse:
    """Roles: the enterprise itself, for its own sites. Body: an instrument record without ``site_id``
    (docs/accounting.md "Market-based Scope 2"; the site is the path's): kind, instrument_id, issuer,
    volume_wh, delivery {start, end}, rate_kg_per_kwh_e4, evidence_sha256. Answers {record, record_sha256,
    registered_at}."""
    with ledger.session_factory.begin() as session:
        site = _site(session, principal, site_id, access_scope.Surface.INSTRUMENT_REGISTER)
        if not isinstance(body, dict):
            raise HTTPException(422, "instrument: the body must be a JSON object")
        if "site_id" in body:
            raise HTTPException(422, "instrument: site_id is the path's; leave it out of the body")
        try:
            instrument = parse_instrument({**body, "site_id": site.id})
        except InstrumentError as err:
            raise HTTPException(422, str(err)) from err
        # the overlap check and the insert must not interleave with another registration of the same
        # instrument: on PostgreSQL a transaction lock on its identity; on SQLite the write session already
        # began IMMEDIATE (cloud/db.py), which serialises every writer
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                            {"k": json.dumps(["instrument", instrument.issuer, instrument.instrument_id])})
        clash = overlapping(session, instrument)
        if clash is not None:
            raise HTTPException(
                409,
                f"instrument {instrument.instrument_id} of {instrument.issuer} is already registered for delivery "
                f"[{clash.delivery_start}, {clash.delivery_end}), which overlaps [{instrument.delivery_start}, "
                f"{instrument.delivery_end}): its energy would be counted twice",
            )
        row = models.ContractualInstrument(
            site_id=site.id,
            enterprise_id=site.enterprise_id,
            kind=instrument.kind,
            issuer=instrument.issuer,
            instrument_id=instrument.instrument_id,
            volume_wh=instrument.volume_wh,
            delivery_start=instrument.delivery_start,
            delivery_end=instrument.delivery_end,
            rate_e4=instrument.rate_e4,
            evidence_sha256=instrument.evidence_sha256,
            record_sha256=instrument.sha256(),
            registered_at=int(time.time()),
        )
        session.add(row)
        session.flush()
        answer = _answer(row)
    return JSONResponse(answer, status_code=201)


@router.get("/sites/{site_id}/instruments")
def list_instruments(
    site_id: Annotated[str, Path(pattern=_SITE_ID)], principal: CallerDep, session: SessionDep
) -> JSONResponse:
    """Roles: operator, regulator, the enterprise and its site engineers (as the site record). The site's
    instruments in registration order, each {record, record_sha256, registered_at}."""
    _site(session, principal, site_id, access_scope.Surface.INSTRUMENT_RECORD)
    C = models.ContractualInstrument
    rows = session.scalars(select(C).where(C.site_id == site_id).order_by(C.id))
    return JSONResponse([_answer(r) for r in rows])
