"""What a reader needs to audit a period itself: the batches of an enterprise and the evidence anchoring them.

The answer names every batch whose window overlaps [start, end) with its CID (the reader fetches each sealed blob
from /batches/{gw}/{seq}/blob, or IPFS, and opens it with its own key), and a proof bundle of those batches as
evidence: each signed header with its log proof, its checkpoint with consistency proofs, the gateway and cloud
keys. The device keys come beside it (every key each device of the enterprise ever had): the reader picks the
one that signed a reading and the chain says whether it counted. `carbontrace audit-period` is the reader's
side (carbontrace/audit_period.py). Who may ask: cloud/access_scope.py, Surface.BATCH_BLOB.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from sqlalchemy import select

from carbontrace_protocol import bundle_wire
from carbontrace_protocol.proof_bundle import KeyEntry, Query
from carbontrace_protocol.proof_verify import ChainUnreachable
from carbontrace_protocol.views import ALL_TYPES
from cloud import models
from cloud import trace as tracelib
from cloud.access_scope import Surface, roles_for
from cloud.bundle_builder import BundleBuilder
from cloud.chain import ChainUnavailable
from cloud.deps import LedgerDep, SessionDep, require
from cloud.params import UnixSeconds
from cloud.routers.console_api import enterprises_in_scope
from cloud.security import Principal
from cloud.signer_keys import DEVICE, keys_of

router = APIRouter(prefix="/api/v1", tags=["batches"])

MAX_AUDIT_BATCHES = 1000  # one answer's worth; a longer period is audited in parts


@router.get("/enterprises/{enterprise_id}/batches")
def enterprise_batches(
    enterprise_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
    start: UnixSeconds,
    end: UnixSeconds,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.BATCH_BLOB)))],
) -> dict[str, Any]:
    """Roles: operator, regulator, the enterprise itself (as for batch blobs). Every batch of the enterprise
    whose window overlaps [start, end), oldest first, with the evidence that anchors them (422: more than
    MAX_AUDIT_BATCHES; audit a shorter period)."""
    enterprises_in_scope(session, ledger, principal, Surface.BATCH_BLOB, enterprise_id)
    if end <= start:
        raise HTTPException(422, "end must be after start")
    B = models.Batch
    rows = session.scalars(
        select(B)
        .join(models.Site, models.Site.id == B.site_id)
        .where(models.Site.enterprise_id == enterprise_id, B.window_end > start, B.window_start < end)
        .order_by(B.log_index)
        .limit(MAX_AUDIT_BATCHES + 1)
    ).all()
    if len(rows) > MAX_AUDIT_BATCHES:
        raise HTTPException(422, f"more than {MAX_AUDIT_BATCHES} batches in the period: audit a shorter one")
    try:
        reader = tracelib.chain_reader(ledger)
        trust = tracelib.trust_of(ledger)
        query = Query(enterprise_id, None, None, start, end, ALL_TYPES, max(1, len(rows)))
        builder = BundleBuilder(session, query, reader, trust.chain_id, trust.registry)
        anchored = reader.checkpoint_count()
        for row in rows:
            seq = tracelib.first_checkpoint(session, row.log_index, anchored)
            builder.add_batch(row.id, row.signed_header, row.log_index, seq)
        evidence = builder.bundle().to_json()
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err
    devices = session.scalars(
        select(models.Device.id)
        .join(models.Site, models.Site.id == models.Device.site_id)
        .where(models.Site.enterprise_id == enterprise_id)
        .order_by(models.Device.id)
    )
    device_keys = [
        KeyEntry(DEVICE, key.signer_id, bytes(key.public_key)).write(bundle_wire.JSON)
        for device_id in devices
        for key in keys_of(session, DEVICE, device_id)
    ]
    return {
        "enterprise_id": enterprise_id,
        "start": start,
        "end": end,
        "batches": [
            {
                "batch_id": r.id,
                "gateway_id": r.gateway_id,
                "batch_seq": r.batch_seq,
                "cid": r.cid,
                "log_index": r.log_index,
                "window": [r.window_start, r.window_end],
            }
            for r in rows
        ],
        "evidence": evidence,
        "device_keys": device_keys,
    }
