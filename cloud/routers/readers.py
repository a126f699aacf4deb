"""An enterprise's blob encryption key: the key its batches are sealed to from now on (cloud/blob_readers.py).

Setting it again rotates it; either way only batches sealed afterwards are affected. Regulators' keys are set by
the operator (`carbontrace cloud readers add regulator NAME --public-key HEX`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from carbontrace_protocol.errors import ProtocolError
from cloud import blob_readers, models
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.security import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["registry"])


class ReaderKeySet(BaseModel):
    public_key: str = Field(
        pattern="^04[0-9a-f]{128}$", description="P-256 public key, uncompressed SEC1, 130 lowercase hex characters"
    )


class ReaderKeyRead(BaseModel):
    kind: str
    id: str
    fingerprint: str
    public_key: str
    added_at: int


def _read(row: models.BlobReader) -> ReaderKeyRead:
    return ReaderKeyRead(
        kind=row.kind, id=row.party_id, fingerprint=row.fingerprint.hex(), public_key=row.public_key.hex(),
        added_at=row.added_at,
    )


@router.put("/enterprises/{enterprise_id}/reader-key", response_model=ReaderKeyRead)
def set_reader_key(
    enterprise_id: str,
    body: ReaderKeySet,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> ReaderKeyRead:
    """Roles: the enterprise itself. Set (or rotate) the key its batches are sealed to from now on."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    now = int(time.time())
    try:
        with ledger.session_factory.begin() as session:
            current = blob_readers.active_reader(session, blob_readers.ENTERPRISE, enterprise_id)
            change = blob_readers.add_reader if current is None else blob_readers.rotate_reader
            row = change(session, blob_readers.ENTERPRISE, enterprise_id, bytes.fromhex(body.public_key), now)
            return _read(row)
    except (blob_readers.ReaderError, ProtocolError) as err:
        raise HTTPException(422, str(err)) from err


@router.get("/enterprises/{enterprise_id}/reader-key", response_model=ReaderKeyRead)
def get_reader_key(
    enterprise_id: str,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.ENTERPRISE))],
) -> ReaderKeyRead:
    """Roles: operator, the enterprise itself. The key its batches are sealed to now (404: none set)."""
    if principal.role == Role.ENTERPRISE and principal.enterprise_id != enterprise_id:
        raise forbidden()
    row = blob_readers.active_reader(session, blob_readers.ENTERPRISE, enterprise_id)
    if row is None:
        raise HTTPException(404, "no reader key set")
    return _read(row)
