"""The public face of the append-only log: checkpoints and proofs. Hashes only, no tenant data."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from cloud import models
from cloud.deps import SessionDep
from cloud.ledger_log import SqlLog
from cloud.params import AfterSeq, Limit, TreeSize
from cloud.schemas import CheckpointRead, ConsistencyProof, InclusionProof

router = APIRouter(prefix="/api/v1/log", tags=["log"])


def _checkpoint_read(row: models.Checkpoint) -> CheckpointRead:
    return CheckpointRead(
        seq=row.seq,
        tree_size=row.tree_size,
        root=row.root.hex(),
        timestamp=row.timestamp,
        cid=row.cid,
        signed=row.signed.hex(),
        anchored=row.anchored,
        tx_hash=row.tx_hash,
        gas_used=row.gas_used,
        block_number=row.block_number,
    )


@router.get("/checkpoints", response_model=list[CheckpointRead])
def list_checkpoints(session: SessionDep, after: AfterSeq = -1, limit: Limit = 100) -> list[CheckpointRead]:
    """Roles: public. Checkpoints in sequence order (anchored or pending)."""
    rows = session.scalars(
        select(models.Checkpoint).where(models.Checkpoint.seq > after).order_by(models.Checkpoint.seq).limit(limit)
    )
    return [_checkpoint_read(r) for r in rows]


@router.get("/checkpoints/latest", response_model=CheckpointRead)
def latest_checkpoint(session: SessionDep) -> CheckpointRead:
    """Roles: public. The newest anchored checkpoint."""
    row = session.scalars(
        select(models.Checkpoint).where(models.Checkpoint.anchored.is_(True)).order_by(models.Checkpoint.seq.desc())
    ).first()
    if row is None:
        raise HTTPException(404, "nothing anchored yet")
    return _checkpoint_read(row)


@router.get("/inclusion", response_model=InclusionProof)
def inclusion(session: SessionDep, batch_id: str, tree_size: TreeSize) -> InclusionProof:
    """Roles: public. Audit path of a batch's log leaf (its signed header) in the log of ``tree_size``."""
    row = session.get(models.Batch, batch_id)
    log = SqlLog(session)
    if row is None or not 0 <= row.log_index < tree_size <= log.size():
        raise HTTPException(404, "no such batch in a log of that size")
    return InclusionProof(
        batch_id=row.id,
        log_index=row.log_index,
        tree_size=tree_size,
        leaf_hash=log.leaf_hash(row.log_index).hex(),
        root=log.root(tree_size).hex(),
        proof=[p.hex() for p in log.inclusion_proof(row.log_index, tree_size)],
    )


@router.get("/consistency", response_model=ConsistencyProof)
def consistency(session: SessionDep, first: TreeSize, second: TreeSize) -> ConsistencyProof:
    """Roles: public. Proof that the log of ``first`` leaves is a prefix of the log of ``second``."""
    log = SqlLog(session)
    if not 0 < first <= second <= log.size():
        raise HTTPException(404, "sizes outside the log")
    return ConsistencyProof(
        first=first,
        second=second,
        first_root=log.root(first).hex(),
        second_root=log.root(second).hex(),
        proof=[p.hex() for p in log.consistency_proof(first, second)],
    )
