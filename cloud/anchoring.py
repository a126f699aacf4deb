"""Signed checkpoints of the log, anchored on the chain in order; plus pinning blobs IPFS missed.

Runs as one leader at a time (cloud/leader.py). A checkpoint is created when due (every N seconds or M
batches), signed with the cloud key, stored with the consistency proof from the previous checkpoint, then
anchored by one transaction. It counts as anchored once `confirmations` blocks follow the transaction's block
(0 on the embedded chain: mined is final; 2 by default elsewhere); until then the row keeps the transaction and each
tick re-reads its receipt, sending again if the node no longer knows it (dropped or reorganised away). A chain that
is down leaves checkpoints pending; they are anchored later in
sequence order (the contract's checkpoint index equals our checkpoint seq), never skipped or reordered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import checkpoint_blob
from carbontrace_protocol.ids import key_fingerprint
from cloud import chain as chainlib
from cloud import models, registry_migration
from cloud.content_store import ContentStore, ContentStoreError
from cloud.leader import LeaderLock
from cloud.ledger_chain import LedgerChain
from cloud.ledger_log import SqlLog
from cloud.signing_key import public_key


def batch_cids(session: Session, lo: int, hi: int) -> list[str]:
    """The cids of the batch blobs of log leaves lo .. hi-1, in log order (one batch per leaf): what a
    checkpoint blob lists, so the chain's checkpoints lead to every batch they commit to."""
    cids = list(session.scalars(
        select(models.Batch.cid).where(models.Batch.log_index >= lo, models.Batch.log_index < hi)
        .order_by(models.Batch.log_index)
    ))
    if len(cids) != hi - lo:
        raise RuntimeError(f"log leaves {lo}..{hi - 1}: {len(cids)} batches found, not {hi - lo}")
    return cids


@dataclass
class TickReport:
    leader: bool
    created: int = 0
    anchored: int = 0
    pinned: int = 0
    error: str | None = None


class Anchorer:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        store: ContentStore,
        chain: LedgerChain,
        signing_key: int,
        lock: LeaderLock,
        every_s: float,
        every_batches: int,
        clock: Callable[[], float] = time.time,
        confirmations: int = 0,
        on_chain_error: Callable[[BaseException], None] = lambda _err: None,
    ) -> None:
        self.session_factory = session_factory
        self.store = store
        self.chain = chain
        self.signing_key = signing_key
        # the checkpoint's kid names the key that signed it, so a verifier never guesses across a rotation
        self.key_fingerprint = key_fingerprint(public_key(signing_key))
        self.lock = lock
        self.every_s = every_s
        self.every_batches = every_batches
        self.clock = clock
        self.confirmations = confirmations
        self.on_chain_error = on_chain_error  # counts the failure (cloud/metrics.py); the row records it
        # (start, end) of every term as leader, so tests can check terms of two workers never overlap.
        self.terms: list[tuple[float, float]] = []
        self._tick_lock = threading.Lock()

    def tick(self, force_checkpoint: bool = False) -> TickReport:
        with self._tick_lock:
            if not self.lock.acquire():
                return TickReport(leader=False)
            start = time.monotonic()
            try:
                report = TickReport(leader=True)
                if self.maybe_checkpoint(force_checkpoint) is not None:
                    report.created = 1
                report.anchored, report.error = self.anchor_pending()
                report.pinned = self.pin_pending()
                return report
            finally:
                self.terms.append((start, time.monotonic()))
                self.lock.release()

    def maybe_checkpoint(self, force: bool = False) -> int | None:
        """Create (sign, store) the next checkpoint if one is due; returns its seq."""
        now = int(self.clock())
        with self.session_factory.begin() as session:
            log = SqlLog(session)
            size = log.size()
            last = session.scalars(select(models.Checkpoint).order_by(models.Checkpoint.seq.desc()).limit(1)).first()
            last_size = last.tree_size if last is not None else 0
            if size == 0 or size == last_size:
                return None
            if last is not None:
                since = last.timestamp
            else:
                since = int(session.execute(select(func.min(models.Batch.received_at))).scalar() or now)
            due = force or size - last_size >= self.every_batches or now - since >= self.every_s
            if not due:
                return None
            root = log.root(size)
            signed = signed_checkpoint.sign(self.signing_key, self.key_fingerprint, size, root, now)
            previous = None if last is None else (last.tree_size, last.root)
            proof = log.consistency_proof(last_size, size) if last is not None else []
            blob = checkpoint_blob.encode(signed, previous, proof, batch_cids(session, last_size, size))
            cid, pinned = self.store.put(blob)
            if session.get(models.Blob, cid) is None:
                session.add(models.Blob(cid=cid, size=len(blob), kind="checkpoint", pinned=pinned, created_at=now))
                session.flush()
            seq = 0 if last is None else last.seq + 1
            session.add(
                models.Checkpoint(
                    seq=seq,
                    tree_size=size,
                    root=root,
                    timestamp=now,
                    signed=signed,
                    cid=cid,
                    anchored=False,
                    attempts=0,
                )
            )
            return seq

    def anchor_pending(self) -> tuple[int, str | None]:
        """Anchor pending checkpoints in seq order; stops at the first failure (retried next tick)."""
        anchored = 0
        with self.session_factory() as session:
            if registry_migration.anchoring_paused(session):
                return 0, "anchoring paused: a registry migration is under way (carbontrace cloud migrate-registry)"
            pending = list(
                session.scalars(
                    select(models.Checkpoint)
                    .where(models.Checkpoint.anchored.is_(False))
                    .order_by(models.Checkpoint.seq)
                )
            )
        for checkpoint in pending:
            try:
                sent = checkpoint.tx_hash is not None and checkpoint.block_number is not None
                block = self._mined_block(checkpoint) if sent else None
                result: chainlib.TxResult | None = None
                if block is None:
                    result = self._anchor_one(checkpoint)
                    block = result.block_number if result is not None else None
                final = block is None or self.chain.connect().block_number() - block >= self.confirmations
            except (chainlib.ChainError, OSError) as err:
                if isinstance(err, chainlib.ContractReverted) and err.error_name == "RegistrySealed":
                    self.chain.forget_registry()  # migrated: the next tick anchors on the successor
                self.on_chain_error(err)
                self._record_failure(checkpoint.seq, f"{type(err).__name__}: {err}")
                return anchored, str(err)
            with self.session_factory.begin() as session:
                row = session.get(models.Checkpoint, checkpoint.seq)
                assert row is not None
                row.anchored = final
                if result is not None or block is None:
                    row.attempts += 1
                row.last_error = None
                if result is not None:
                    row.tx_hash = "0x" + result.tx_hash.hex()
                    row.gas_used = result.gas_used
                    row.block_number = result.block_number
                elif block is not None:
                    row.block_number = block
            if final:
                anchored += 1
        return anchored, None

    def _mined_block(self, checkpoint: models.Checkpoint) -> int | None:
        """The block the checkpoint's sent transaction is in now; None if the node lost it."""
        assert checkpoint.tx_hash is not None
        return self.chain.connect().receipt_block(bytes.fromhex(checkpoint.tx_hash.removeprefix("0x")))

    def _anchor_one(self, checkpoint: models.Checkpoint) -> chainlib.TxResult | None:
        registry = self.chain.registry()
        count = registry.checkpoint_count()
        if count > checkpoint.seq:
            # Sent before, but we did not learn the outcome (crash or lost answer): adopt it if it is ours (on
            # the registry that holds it, a predecessor if it was anchored before a migration).
            holder = self.chain.registry_holding(checkpoint.seq)
            onchain = holder.checkpoint(checkpoint.seq, near_block=checkpoint.block_number)
            if (onchain.tree_size, onchain.root, onchain.cid) != (
                checkpoint.tree_size,
                checkpoint.root,
                checkpoint.cid,
            ):
                # Only this cloud's operator anchors on its registry, so a different checkpoint there was ours
                # once: the database lost it (restored from a backup older than the chain).
                raise chainlib.ChainAheadOfDatabase(
                    f"the registry holds {count} checkpoint(s), this database's pending one is number "
                    f"{checkpoint.seq} and differs from the chain's: the database is older than the chain "
                    "(restored from an older backup)")
            return None
        if count < checkpoint.seq:
            raise chainlib.ChainError(f"chain has {count} checkpoints, ours is number {checkpoint.seq}")
        return registry.anchor_checkpoint(checkpoint.tree_size, checkpoint.root, checkpoint.cid)

    def _record_failure(self, seq: int, message: str) -> None:
        with self.session_factory.begin() as session:
            row = session.get(models.Checkpoint, seq)
            if row is not None:
                row.attempts += 1
                row.last_error = message[:500]

    def pin_pending(self, limit: int = 100) -> int:
        """Push blobs that IPFS missed (it was down at ingestion); returns how many got pinned."""
        if self.store.ipfs is None:
            return 0
        with self.session_factory() as session:
            cids = list(session.scalars(select(models.Blob.cid).where(models.Blob.pinned.is_(False)).limit(limit)))
        pinned = 0
        for cid in cids:
            try:
                ok = self.store.pin(cid)
            except ContentStoreError:
                ok = False
            if not ok:
                break
            with self.session_factory.begin() as session:
                row = session.get(models.Blob, cid)
                if row is not None:
                    row.pinned = True
            pinned += 1
        return pinned
