"""Batch upload (the gateway ↔ cloud contract) and batch/reading lookup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from carbontrace_protocol import views
from carbontrace_protocol.batch_verify import BatchRejected
from cloud import models
from cloud.access_scope import (
    Forbidden,
    Surface,
    TenantScope,
    enterprises_of,
    may_see_batch,
    readings_scope,
    roles_for,
    roles_for_types,
    surface_scope,
)
from cloud.content_store import ContentStoreError
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ingest import NotYourGateway, OutOfOrder
from cloud.params import BatchSeq, ReadingsLimit, UnixSeconds
from cloud.reading_values import reading_values
from cloud.schemas import BatchRead, QuarantinedLeafRead, ReadingRead
from cloud.security import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["batches"])


@router.post(
    "/batches",
    status_code=201,
    responses={
        200: {"description": "retry of an accepted batch: the same receipt"},
        409: {"description": "out_of_order: prev/batch_seq do not follow the last accepted batch"},
        413: {"description": "body larger than max_batch_bytes (enforced by cloud/request_limits.py)"},
        422: {"description": "verification failed; nothing stored"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/cbor": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_batch(
    request: Request, ledger: LedgerDep, principal: Annotated[Principal, Depends(require(Role.GATEWAY))]
) -> JSONResponse:
    """Roles: gateway (its own batches only). Body: the batch blob, Content-Type application/cbor."""
    blob = await request.body()  # at most max_batch_bytes: cloud/request_limits.py refused anything larger
    assert principal.gateway_id is not None
    counted = ledger.metrics
    try:
        created, receipt = await run_in_threadpool(ledger.ingestor.ingest, principal.gateway_id, blob)
    except NotYourGateway:
        counted.batches_rejected.labels("forbidden").inc()
        return JSONResponse({"detail": "forbidden"}, 403)
    except BatchRejected as err:
        counted.batches_rejected.labels(err.reason).inc()
        return JSONResponse({"error": err.reason, "detail": str(err), "leaf_index": err.leaf_index}, 422)
    except OutOfOrder as err:
        counted.batches_rejected.labels("out_of_order").inc()
        body: dict[str, Any] = {"error": "out_of_order", "expected_batch_seq": err.expected_batch_seq}
        body["detail"] = err.detail
        return JSONResponse(body, 409)
    if created:
        counted.batches_accepted.inc()
        counted.readings_accepted.inc(int(receipt["readings"]))
    else:
        counted.batches_duplicate.inc()
    return JSONResponse(receipt, 201 if created else 200)


def _batch_in_scope(
    session: SessionDep, principal: Principal, surface: Surface, gateway_id: str, batch_seq: int
) -> models.Batch:
    """The batch if the caller may read it on ``surface`` (cloud/access_scope.may_see_batch); 403 otherwise,
    also when it does not exist, except to a caller who may see every tenant's (404)."""
    row = session.execute(
        select(models.Batch).where(models.Batch.gateway_id == gateway_id, models.Batch.batch_seq == batch_seq)
    ).scalar_one_or_none()
    if row is None and principal.role != Role.GATEWAY and surface_scope(principal, surface) == TenantScope.ANY:
        raise HTTPException(404, "no such batch")
    site = None if row is None else session.get(models.Site, row.site_id)
    if row is None or not may_see_batch(principal, surface, gateway_id, None if site is None else site.enterprise_id):
        raise forbidden()
    return row


@router.get("/batches/{gateway_id}/{batch_seq}", response_model=BatchRead)
def read_batch(
    gateway_id: str,
    batch_seq: BatchSeq,
    session: SessionDep,
    principal: Annotated[
        Principal, Depends(require(*roles_for(Surface.BATCH_RECORD)))
    ],
) -> BatchRead:
    """Roles: operator, regulator, the owning enterprise and its site engineers, the uploading gateway
    (cloud/access_scope.py: each of them may see the batch's CID)."""
    row = _batch_in_scope(session, principal, Surface.BATCH_RECORD, gateway_id, batch_seq)
    quarantined = [
        QuarantinedLeafRead(
            leaf_index=q.leaf_index, kind=q.kind, device_id=q.device_id, seq=q.seq, reason=q.reason,
            quarantined_at=q.quarantined_at,
        )
        for q in session.scalars(
            select(models.QuarantinedLeaf)
            .where(models.QuarantinedLeaf.batch_id == row.id)
            .order_by(models.QuarantinedLeaf.leaf_index)
        )
    ]
    return BatchRead(
        batch_id=row.id,
        batch_hash=row.batch_hash.hex(),
        cid=row.cid,
        log_index=row.log_index,
        leaves=row.leaves,
        readings=row.readings,
        status="accepted",
        gateway_id=row.gateway_id,
        site_id=row.site_id,
        batch_seq=row.batch_seq,
        root=row.root.hex(),
        window=[row.window_start, row.window_end],
        received_at=row.received_at,
        quarantined=sum(1 for q in quarantined if q.kind == "reading"),
        quarantined_leaves=quarantined,
    )


@router.get("/batches/{gateway_id}/{batch_seq}/blob")
def read_batch_blob(
    gateway_id: str,
    batch_seq: BatchSeq,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.BATCH_BLOB)))],
) -> JSONResponse:
    """Roles: operator, regulator, the owning enterprise. The stored blob (hex), re-read from the content store: the
    sealed envelope (docs/protocol.md, "Sealed blobs"), which a reader opens with `carbontrace open-blob`."""
    row = _batch_in_scope(session, principal, Surface.BATCH_BLOB, gateway_id, batch_seq)
    try:
        blob = ledger.store.get(row.cid)
    except (ContentStoreError, KeyError) as err:  # missing, or not the bytes its CID names: say so, do not serve
        return JSONResponse({"error": "content_store", "detail": f"{type(err).__name__}: {err}"}, 502)
    return JSONResponse({"cid": row.cid, "blob": blob.hex()})


@router.get("/devices/{device_id}/readings", response_model=list[ReadingRead])
def device_readings(
    device_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for_types(views.READING_TYPES)))],
    since: UnixSeconds = 0,
    limit: ReadingsLimit = 1000,
) -> list[ReadingRead]:
    """Roles: whoever may trace the readings' measurement types, for the enterprises it may trace them of
    (cloud/access_scope.py DATA_SCOPE: a regulator any device, an enterprise its own); a field of a type the
    caller may not trace is null. The values are decoded from the readings' sealed batch blobs (SQL holds none)."""
    try:
        types, scope = readings_scope(principal)
        device = session.get(models.Device, device_id)
        if device is None:
            if scope == TenantScope.ANY:
                raise HTTPException(404, "no such device")
            raise Forbidden()
        site = session.get(models.Site, device.site_id)
        assert site is not None  # devices.site_id is a foreign key
        enterprises_of(session, ledger, principal, scope, site.enterprise_id)
    except Forbidden as err:
        raise forbidden() from err
    shown = frozenset(views.reading_fields_of(types))
    rows = session.scalars(
        select(models.Reading)
        .where(models.Reading.device_id == device_id, models.Reading.timestamp >= since)
        .order_by(models.Reading.seq)
        .limit(limit)
    ).all()
    values = reading_values(ledger, session, rows)
    return [
        ReadingRead(
            device_id=r.device_id,
            seq=r.seq,
            timestamp=r.timestamp,
            flags=r.flags,
            batch_id=r.batch_id,
            leaf_index=r.leaf_index,
            **{name: value if name in shown else None for name, value in values[r.id].items()},
        )
        for r in rows
    ]
