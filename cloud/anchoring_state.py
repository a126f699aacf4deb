"""What the anchoring job has left to do, read from the database: the figures behind /metrics, `carbontrace cloud
status` and the operator-unfunded halt. Reads only (any replica can answer; the leader does the work)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import models
from cloud.ledger_log import SqlLog

# Why anchoring stands still, from the first pending checkpoint's last error (cloud/anchoring.py records
# "<exception class>: <message>"). Only these names reach a metric label, so its cardinality stays bounded.
HALT_OPERATOR_UNFUNDED = "operator_unfunded"
HALT_CHAIN_UNAVAILABLE = "chain_unavailable"
HALT_CHAIN_ERROR = "chain_error"
HALT_CHAIN_AHEAD = "chain_ahead_of_database"
HALT_REASONS = (HALT_OPERATOR_UNFUNDED, HALT_CHAIN_UNAVAILABLE, HALT_CHAIN_ERROR, HALT_CHAIN_AHEAD)
# What resolves each halt (printed by `carbontrace cloud status`; the README's operations table says the same).
RESOLUTION = {
    HALT_OPERATOR_UNFUNDED: "send ether to the chain_account `carbontrace cloud chain-account` prints, then run "
    "`carbontrace cloud anchor` (or wait for the worker's next tick): pending checkpoints anchor in order",
    HALT_CHAIN_UNAVAILABLE: "bring back the node at CT_CLOUD_CHAIN (GET /readyz names it); anchoring resumes by itself",
    HALT_CHAIN_ERROR: "read last_error; after fixing its cause, `carbontrace cloud anchor` retries",
    HALT_CHAIN_AHEAD: "the database was restored from a backup older than the chain: with the cloud stopped, run "
    "`carbontrace cloud recover-from-chain` (re-ingests the checkpoints and batches anchored since, fetched by cid "
    "from the content store or IPFS and verified against the chain; if a cid cannot be fetched it names it and "
    "changes nothing), then start the cloud: anchoring resumes from the chain's head (a newer backup, taken after "
    "the chain's last checkpoint, also resolves it; nothing is anchored meanwhile, ingestion goes on)",
}
_HALT_OF_ERROR = {"OperatorUnfunded": HALT_OPERATOR_UNFUNDED, "ChainUnavailable": HALT_CHAIN_UNAVAILABLE,
                  "ChainAheadOfDatabase": HALT_CHAIN_AHEAD}


@dataclass(frozen=True)
class AnchoringState:
    log_size: int  # leaves (one per accepted batch) in the append-only log
    anchored_size: int  # tree size of the newest anchored checkpoint
    pending_checkpoints: int  # signed, not yet anchored (or not yet confirmed)
    oldest_unanchored_at: int | None  # received_at of the oldest batch no anchored checkpoint covers
    unpinned_blobs: int  # blobs IPFS has not got yet (it was down when they were stored)
    halted: str | None  # one of HALT_REASONS while the first pending checkpoint keeps failing
    last_error: str | None  # that checkpoint's last error, as recorded

    @property
    def unanchored_leaves(self) -> int:
        return self.log_size - self.anchored_size

    def lag_s(self, now: float) -> float:
        """Seconds the oldest unanchored leaf has waited; 0 when everything is anchored."""
        return 0.0 if self.oldest_unanchored_at is None else max(0.0, now - self.oldest_unanchored_at)


def halt_of(last_error: str | None) -> str | None:
    if not last_error:
        return None
    return _HALT_OF_ERROR.get(last_error.partition(":")[0].strip(), HALT_CHAIN_ERROR)


def anchoring_state(session: Session) -> AnchoringState:
    anchored_size = session.execute(
        select(func.max(models.Checkpoint.tree_size)).where(models.Checkpoint.anchored.is_(True))
    ).scalar()
    anchored_size = int(anchored_size or 0)
    pending = session.execute(
        select(func.count()).select_from(models.Checkpoint).where(models.Checkpoint.anchored.is_(False))
    ).scalar_one()
    first_pending = session.scalars(
        select(models.Checkpoint).where(models.Checkpoint.anchored.is_(False)).order_by(models.Checkpoint.seq).limit(1)
    ).first()
    oldest = session.execute(
        select(func.min(models.Batch.received_at)).where(models.Batch.log_index >= anchored_size)
    ).scalar()
    unpinned = session.execute(
        select(func.count()).select_from(models.Blob).where(models.Blob.pinned.is_(False))
    ).scalar_one()
    last_error = first_pending.last_error if first_pending is not None else None
    return AnchoringState(
        log_size=SqlLog(session).size(),
        anchored_size=anchored_size,
        pending_checkpoints=int(pending),
        oldest_unanchored_at=int(oldest) if oldest is not None else None,
        unpinned_blobs=int(unpinned),
        halted=halt_of(last_error),
        last_error=last_error,
    )
