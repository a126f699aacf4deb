"""Reader keys set through the API: the key a party's batch blobs are sealed to from now on (cloud/blob_readers.py).

Setting a key again rotates it; either way only batches sealed afterwards are affected. An enterprise sets its
own; a regulator sets its own with its own API key (its id is the one `POST /regulators` named), and the operator
may set any regulator's (also `carbontrace cloud readers add|rotate regulator ID`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from carbontrace_protocol.errors import ProtocolError
from cloud import blob_readers, models
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ledger import Ledger
from cloud.security import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["registry"])

_ID = r"^[A-Za-z0-9._-]{1,64}$"


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


def _set_key(ledger: Ledger, kind: str, party_id: str, body: ReaderKeySet) -> ReaderKeyRead:
    """Add the party's first key, or rotate its active one."""
    now = int(time.time())
    try:
        with ledger.session_factory.begin() as session:
            current = blob_readers.active_reader(session, kind, party_id)
            change = blob_readers.add_reader if current is None else blob_readers.rotate_reader
            return _read(change(session, kind, party_id, bytes.fromhex(body.public_key), now))
    except (blob_readers.ReaderError, ProtocolError) as err:
        raise HTTPException(422, str(err)) from err


def _get_key(session: SessionDep, kind: str, party_id: str) -> ReaderKeyRead:
    row = blob_readers.active_reader(session, kind, party_id)
    if row is None:
        raise HTTPException(404, "no reader key set")
    return _read(row)


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
    return _set_key(ledger, blob_readers.ENTERPRISE, enterprise_id, body)


@router.get("/enterprises/{enterprise_id}/reader-key", response_model=ReaderKeyRead)
def get_reader_key(
    enterprise_id: str,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.ENTERPRISE))],
) -> ReaderKeyRead:
    """Roles: operator, the enterprise itself. The key its batches are sealed to now (404: none set)."""
    if principal.role == Role.ENTERPRISE and principal.enterprise_id != enterprise_id:
        raise forbidden()
    return _get_key(session, blob_readers.ENTERPRISE, enterprise_id)


def _regulator_in_scope(principal: Principal, regulator_id: str) -> None:
    # a regulator key speaks for its own regulator only; the operator for any
    if principal.role == Role.REGULATOR and principal.regulator_id != regulator_id:
        raise forbidden()


RegulatorId = Annotated[str, Path(pattern=_ID)]


@router.put("/regulators/{regulator_id}/reader-key", response_model=ReaderKeyRead)
def set_regulator_reader_key(
    regulator_id: RegulatorId,
    body: ReaderKeySet,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.REGULATOR))],
) -> ReaderKeyRead:
    """Roles: the regulator itself, operator. Set (or rotate) the key every batch is sealed to from now on."""
    _regulator_in_scope(principal, regulator_id)
    return _set_key(ledger, blob_readers.REGULATOR, regulator_id, body)


@router.get("/regulators/{regulator_id}/reader-key", response_model=ReaderKeyRead)
def get_regulator_reader_key(
    regulator_id: RegulatorId,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.REGULATOR))],
) -> ReaderKeyRead:
    """Roles: the regulator itself, operator. The key batches are sealed to now for it (404: none set)."""
    _regulator_in_scope(principal, regulator_id)
    return _get_key(session, blob_readers.REGULATOR, regulator_id)
