"""Recovery from the chain: the command that resolves the chain_ahead_of_database halt
(`carbontrace cloud recover-from-chain`).

A database restored from a backup older than its external chain lacks the checkpoints anchored since, and the
batches they commit to. Everything needed to rebuild them is public and content-addressed: the registry's
CheckpointAnchored events give each checkpoint's (size, root, cid), taken only once they open the commitment
the contract stores (carbontrace_protocol.anchor_commitment); the cid names the checkpoint blob
(carbontrace_protocol.checkpoint_blob), which lists the cid of every batch blob the checkpoint adds; the
content store or IPFS serves those bytes, and recomputing the cid checks them.

Nothing is trusted before it verifies: each checkpoint's signature under a cloud key the chain lists for it,
its size and root equal to the anchored ones, its consistency proof from the one before; each batch's gateway
signature under a key the chain lists for that gateway, and the log rebuilt from the batches' signed headers
must give every anchored root. Only then is anything written, in one database transaction: the batches through
the normal ingestion path (cloud/ingest.py: every device signature, aggregate, order and replay check again,
keeping each batch's sealed blob and so its cid), then the checkpoints as anchored, replacing the database's
pending ones of the same numbers (never sent: the chain holds others under those numbers). Any failure rolls
it all back. Content that cannot be fetched is named, cid by cid, before anything is written.

Run it again and it finds nothing to recover (idempotent). Anchoring then resumes from the chain's head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from carbontrace_protocol import batch as batchlib
from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import checkpoint_blob, cose, merkle, sealed_blob
from carbontrace_protocol import proof_verify as pv
from carbontrace_protocol.anchor_commitment import AnchoredFields
from carbontrace_protocol.batch_verify import BatchRejected
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.ids import CLOUD_SIGNER, SIGNER_CLOUD, SIGNER_GATEWAY, key_fingerprint
from carbontrace_protocol.verify import verify_es256
from cloud import models
from cloud.content_store import ContentStoreError
from cloud.db import WRITE_OPTION
from cloud.ingest import Ingestor, NotYourGateway, OutOfOrder
from cloud.ledger import Ledger
from cloud.ledger_log import SqlLog, peak_positions
from cloud.signer_keys import CLOUD, GATEWAY, key_that_signed
from cloud.signing_key import public_key
from cloud.trace import RegistryReader


class RecoveryRefused(Exception):
    """The chain's checkpoints cannot be re-ingested as they are; nothing was changed."""


class ContentMissing(RecoveryRefused):
    """Blobs the chain's checkpoints name that neither the content store nor IPFS could give; nothing changed."""

    def __init__(self, missing: dict[str, str]) -> None:
        self.missing = missing  # cid -> why it could not be had
        super().__init__(f"{len(missing)} blob(s) named by the chain's checkpoints cannot be fetched: "
                         + ", ".join(sorted(missing)))


@dataclass(frozen=True)
class FetchedBatch:
    cid: str
    sealed: bytes  # as stored (its cid is the checkpoint blob's entry)
    plain: bytes  # the batch blob it opens to
    batch: batchlib.Batch


@dataclass(frozen=True)
class VerifiedCheckpoint:
    seq: int
    anchored: AnchoredFields
    blob: bytes
    checkpoint: signed_checkpoint.Checkpoint
    batches: tuple[FetchedBatch, ...]


@dataclass
class RecoveryReport:
    chain_checkpoints: int  # the registry's checkpoint count
    database_checkpoints: int  # anchored checkpoints the database held before
    recovered_checkpoints: list[int] = field(default_factory=list)
    batches_ingested: int = 0
    batches_already_held: int = 0  # the chain's batches the database had accepted again after the restore
    dropped_pending_checkpoints: list[int] = field(default_factory=list)  # never anchored; replaced
    tree_size: int = 0

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def recover_from_chain(ledger: Ledger) -> RecoveryReport:
    registry = ledger.chain.registry()
    count = registry.checkpoint_count()
    with ledger.read_session_factory() as session:
        start = _anchored_count(session)
        base = session.get(models.Checkpoint, start - 1) if start else None
        base_size, base_root = (base.tree_size, base.root) if base is not None else (0, merkle.EMPTY_ROOT)
        log = SqlLog(session)
        log_size = log.size()
        peaks = [log.node(level, index) for level, index in peak_positions(base_size)]
        held = {int(index): bytes(header) for index, header in session.execute(
            select(models.Batch.log_index, models.Batch.signed_header).where(models.Batch.log_index >= base_size))}
        report = RecoveryReport(count, start, tree_size=log_size)
        if start >= count:
            return report  # nothing on chain the database lacks (a second run ends here)
        if base is not None:
            _check_base(ledger, base)
        checkpoints = _fetch_and_verify(ledger, session, start, count, base_size, base_root, peaks)
    leaves = [b.batch.signed_header for cp in checkpoints for b in cp.batches]
    for index in range(base_size, log_size):
        chain_leaf = leaves[index - base_size] if index - base_size < len(leaves) else None
        if chain_leaf is not None and held.get(index) != chain_leaf:
            raise RecoveryRefused(
                f"log leaf {index} of this database is a batch accepted after the restore, not the chain's (batch "
                f"{_batch_id(chain_leaf)}): the logs forked; run the recovery right after the restore, before the "
                "cloud accepts uploads (restore the same backup again, then run it)")
    _write(ledger, checkpoints, start, base_size, log_size, report)
    return report


def _anchored_count(session: Session) -> int:
    """How many checkpoints, from number 0 on, the database holds as anchored."""
    newest = session.execute(
        select(func.max(models.Checkpoint.seq)).where(models.Checkpoint.anchored.is_(True))).scalar()
    return 0 if newest is None else int(newest) + 1


def _check_base(ledger: Ledger, base: models.Checkpoint) -> None:
    """The database's newest anchored checkpoint must be the chain's: recovery continues the same log."""
    onchain = ledger.chain.registry_holding(base.seq).opened_checkpoint(base.seq, near_block=base.block_number)
    if (onchain.tree_size, onchain.root, onchain.cid) != (base.tree_size, base.root, base.cid):
        raise RecoveryRefused(f"the database's anchored checkpoint {base.seq} is not the chain's (size "
                              f"{onchain.tree_size}, cid {onchain.cid}): this database is not of this registry's log")


def _fetch(ledger: Ledger, cid: str, missing: dict[str, str]) -> bytes | None:
    try:
        return ledger.store.get(cid)
    except KeyError:
        missing[cid] = "in neither the content store nor IPFS" if ledger.store.ipfs else "not in the content store"
    except (ContentStoreError, ValueError) as err:
        missing[cid] = f"{type(err).__name__}: {err}"
    return None


def _fetch_and_verify(
    ledger: Ledger, session: Session, start: int, count: int, base_size: int, base_root: bytes, peaks: list[bytes]
) -> list[VerifiedCheckpoint]:
    reader = RegistryReader(ledger.chain.registry())
    cloud_keys = {key_fingerprint(k.public_key): k.public_key for k in session.scalars(
        select(models.SignerKey).where(models.SignerKey.kind == CLOUD))}
    own = public_key(ledger.signing_key)
    cloud_keys[key_fingerprint(own)] = own
    compact = merkle.CompactRange(base_size, peaks)
    previous = (base_size, base_root)
    missing: dict[str, str] = {}
    verified: list[VerifiedCheckpoint] = []
    for seq in range(start, count):
        anchored = ledger.chain.registry_holding(seq).opened_checkpoint(seq)  # opens the stored commitment
        before, previous = previous, (anchored.tree_size, anchored.root)
        blob = _fetch(ledger, anchored.cid, missing)
        if blob is None:
            continue  # its batches are unknown: keep naming what else is missing, then refuse
        checkpoint, listed = _verify_checkpoint(seq, anchored, blob, before, cloud_keys, reader)
        batches: list[FetchedBatch] = []
        for cid in listed:
            sealed = _fetch(ledger, cid, missing)
            if sealed is not None:
                batches.append(_verify_batch(ledger, session, reader, seq, cid, sealed))
        if missing:
            continue
        for fetched in batches:
            compact.append(merkle.leaf_hash(fetched.batch.signed_header))
        if compact.root() != anchored.root:
            raise RecoveryRefused(f"checkpoint {seq}: the log rebuilt from its batches has root "
                                  f"{compact.root().hex()}, the chain anchored {anchored.root.hex()}")
        verified.append(VerifiedCheckpoint(seq, anchored, blob, checkpoint, tuple(batches)))
    if missing:
        raise ContentMissing(missing)
    return verified


def _verify_checkpoint(
    seq: int, anchored: AnchoredFields, blob: bytes, previous: tuple[int, bytes],
    cloud_keys: dict[bytes, bytes], reader: RegistryReader,
) -> tuple[signed_checkpoint.Checkpoint, tuple[str, ...]]:
    """The signed checkpoint of the blob the chain names for ``seq``, and the batch cids it lists."""
    try:
        parsed_blob = checkpoint_blob.parse(blob)
        checkpoint = signed_checkpoint.parse(parsed_blob.signed)
    except ProtocolError as err:
        raise RecoveryRefused(f"checkpoint {seq} (blob {anchored.cid}): {err}") from err
    if (checkpoint.tree_size, checkpoint.root) != (anchored.tree_size, anchored.root):
        raise RecoveryRefused(f"checkpoint {seq}: the blob's signed size and root are not the anchored ones")
    key = cloud_keys.get(checkpoint.key_fingerprint)
    if key is None:
        raise RecoveryRefused(f"checkpoint {seq} is signed by cloud key {checkpoint.key_fingerprint.hex()}, which "
                              "neither this database nor the signing key file holds")
    if not verify_es256(key, checkpoint.message.signed_bytes(), checkpoint.message.signature):
        raise RecoveryRefused(f"checkpoint {seq}: the cloud signature does not verify")
    try:
        pv.check_key_on_chain("checkpoint_signature", reader, checkpoint.key_fingerprint, SIGNER_CLOUD,
                              CLOUD_SIGNER, seq)
    except pv.CheckFailed as err:
        raise RecoveryRefused(f"checkpoint {seq}: {err}") from err
    expected_previous = None if previous[0] == 0 else previous
    if parsed_blob.previous != expected_previous or (
        expected_previous is not None and not merkle.verify_consistency(
            previous[0], checkpoint.tree_size, previous[1], checkpoint.root, list(parsed_blob.consistency))
    ):
        raise RecoveryRefused(f"checkpoint {seq}: its previous checkpoint or consistency proof is not the chain's")
    if parsed_blob.batches is None:
        raise RecoveryRefused(f"checkpoint {seq} (blob {anchored.cid}) was written before checkpoint blobs listed "
                              "their batches: its batches cannot be found from the chain")
    if len(parsed_blob.batches) != checkpoint.tree_size - previous[0]:
        raise RecoveryRefused(f"checkpoint {seq} lists {len(parsed_blob.batches)} batches for "
                              f"{checkpoint.tree_size - previous[0]} new log leaves")
    return checkpoint, parsed_blob.batches


def _verify_batch(
    ledger: Ledger, session: Session, reader: RegistryReader, seq: int, cid: str, sealed: bytes
) -> FetchedBatch:
    """The batch blob ``cid`` opened, its gateway signature verified under a key the chain lists for it."""
    try:
        batch_id = sealed_blob.parse(sealed).batch_id if sealed_blob.is_sealed(sealed) else None
        plain = ledger.sealer.open(sealed, batch_id) if batch_id is not None else sealed
        batch = batchlib.decode_batch(plain)
        message = cose.parse_sign1(batch.signed_header)
    except ProtocolError as err:
        raise RecoveryRefused(f"checkpoint {seq}: batch blob {cid} does not open as a batch: {err}") from err
    if batch_id is not None and batch.id != batch_id:
        raise RecoveryRefused(f"batch blob {cid} is sealed as {batch_id} but holds batch {batch.id}")
    gateway_id = str(batch.header["gateway"])
    key = key_that_signed(session, GATEWAY, gateway_id, message.signed_bytes(), message.signature)
    if key is None:
        raise RecoveryRefused(f"batch {batch.id} (blob {cid}): no key of gateway {gateway_id} this database "
                              "knows verifies its header")
    try:
        pv.check_key_on_chain("gateway_signature", reader, key.fingerprint, SIGNER_GATEWAY, gateway_id, seq)
    except pv.CheckFailed as err:
        raise RecoveryRefused(f"batch {batch.id} (blob {cid}): {err}") from err
    return FetchedBatch(cid, sealed, plain, batch)


def _write(
    ledger: Ledger, checkpoints: list[VerifiedCheckpoint], start: int, base_size: int, log_size: int,
    report: RecoveryReport,
) -> None:
    """One transaction: the batches through ingestion (savepoints inside it), then the checkpoints."""
    stored = {cp.seq: ledger.store.put(cp.blob) for cp in checkpoints}  # content-addressed: safe to repeat
    with ledger.engine.connect() as plain_connection:
        connection = plain_connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            sessions = sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                                    expire_on_commit=False)
            ingestor = Ingestor(sessions, ledger.store, ledger.sealer, sessions)
            with sessions.begin() as session:
                if SqlLog(session).size() != log_size:
                    raise RecoveryRefused("the log grew while recovering: stop the cloud, then run it again")
                dropped = list(session.scalars(select(models.Checkpoint.seq).where(models.Checkpoint.seq >= start)
                                               .order_by(models.Checkpoint.seq)))
                session.execute(delete(models.Checkpoint).where(models.Checkpoint.seq >= start))
            index = base_size
            for cp in checkpoints:
                for fetched in cp.batches:
                    created = _ingest(ingestor, fetched, index)
                    report.batches_ingested += created
                    report.batches_already_held += not created
                    index += 1
            with sessions.begin() as session:
                log = SqlLog(session)
                for cp in checkpoints:
                    if log.root(cp.anchored.tree_size) != cp.anchored.root:
                        raise RecoveryRefused(f"checkpoint {cp.seq}: the re-ingested log's root is not the anchored")
                    cid, pinned = stored[cp.seq]
                    if session.get(models.Blob, cid) is None:
                        session.add(models.Blob(cid=cid, size=len(cp.blob), kind="checkpoint", pinned=pinned,
                                                created_at=cp.checkpoint.time))
                        session.flush()
                    session.add(models.Checkpoint(
                        seq=cp.seq, tree_size=cp.anchored.tree_size, root=cp.anchored.root,
                        timestamp=cp.checkpoint.time, signed=cp.checkpoint.signed, cid=cid, anchored=True,
                        block_number=cp.anchored.block_number, attempts=0,
                    ))
                report.tree_size = log.size()
    report.dropped_pending_checkpoints = dropped
    report.recovered_checkpoints = [cp.seq for cp in checkpoints]


def _ingest(ingestor: Ingestor, fetched: FetchedBatch, index: int) -> bool:
    """Whether the batch was stored now (False: the database held it, at the same log position)."""
    try:
        created, receipt = ingestor.ingest(str(fetched.batch.header["gateway"]), fetched.plain, fetched.sealed)
    except (BatchRejected, OutOfOrder, NotYourGateway) as err:
        reason = err.reason if isinstance(err, BatchRejected) else type(err).__name__
        raise RecoveryRefused(f"batch {fetched.batch.id} (blob {fetched.cid}) is refused by ingestion ({reason}): "
                              f"{err}; nothing was changed") from err
    if receipt["log_index"] != index:
        raise RecoveryRefused(f"batch {fetched.batch.id} landed at log leaf {receipt['log_index']}, the chain has it "
                              f"at {index}")
    return created


def _batch_id(signed_header: bytes) -> str:
    try:
        _message, header = batchlib.parse_header(signed_header)
    except ProtocolError:
        return "unreadable"
    return batchlib.batch_id(header["gateway"], header["batch_seq"])

