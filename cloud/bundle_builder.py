"""The proof bundle of retrieved leaves (docs/proof-bundle.md), written with the protocol core's typed parts.

The cloud writes a ``carbontrace_protocol.proof_bundle.ProofBundle`` — the same definition every verifier
parses — so a bundle that the cloud can build is, by construction, one the format step accepts. Keys are
named by fingerprint: the key that actually signed each reading, batch header and checkpoint (found in the
signer key history, cloud/signer_keys.py), not the signer's current key, so a proof survives a rotation.
A leaf whose signing key the history does not hold is listed as a retrieval failure, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol.batch import parse_header, parse_leaf
from carbontrace_protocol.errors import ProofError, ProtocolError
from carbontrace_protocol.ids import CLOUD_SIGNER, key_fingerprint
from carbontrace_protocol.proof_bundle import (
    DEVICE_SIGNED_KINDS,
    WITHHELD_STEP,
    BatchEntry,
    CheckpointEntry,
    ItemEntry,
    KeyEntry,
    NewestAnchor,
    ProofBundle,
    Query,
    RetrievalFailure,
)
from carbontrace_protocol.proof_verify import ChainReader
from carbontrace_protocol.verify import parse_sign1
from carbontrace_protocol.views import DataType, fields_to_open, view
from cloud import models
from cloud.ledger_log import SqlLog
from cloud.signer_keys import CLOUD, DEVICE, GATEWAY, SignerKindName, key_by_fingerprint, key_that_signed, keys_of

if TYPE_CHECKING:
    from cloud.trace import Located, Retrieved


def disclosed_openings(
    leaf: bytes, openings: dict[str, bytes], types: frozenset[DataType]
) -> tuple[tuple[str, bytes], ...]:
    """The openings a bundle for ``types`` carries: exactly the fields those types disclose, so a closed field
    (CO2 for the public) never leaves the sealed blob."""
    return tuple((name, openings[name]) for name in sorted(fields_to_open(leaf, types)))


class _Unprovable(Exception):
    """A retrieved leaf the bundle cannot prove (its signing key is unknown): a retrieval failure."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


class BundleBuilder:
    def __init__(self, session: Session, query: Query, reader: ChainReader, chain_id: int, registry: str) -> None:
        self.session = session
        self.query = query
        self.reader = reader
        self.chain_id = chain_id
        self.registry = registry
        self.log = SqlLog(session)
        count = reader.checkpoint_count()
        self.newest: NewestAnchor | None = None
        if count > 0:
            onchain = reader.checkpoint(count - 1)
            self.newest = NewestAnchor(count - 1, onchain.tree_size, onchain.root)
        self.keys: dict[bytes, KeyEntry] = {}
        self.batches: dict[str, BatchEntry] = {}
        self.checkpoints: dict[int, CheckpointEntry] = {}
        self.items: list[ItemEntry] = []
        self.failures: list[RetrievalFailure] = []
        self.extra_keys: set[bytes] = set()
        self.evidence: set[str] = set()  # batches no item points into, carried for a statement's batch chain

    def add(self, item: Retrieved) -> None:
        loc = item.located
        if loc.withheld is not None:  # counted as withheld: neither its leaf nor its CID is in the bundle
            self.failures.append(_failure(loc, WITHHELD_STEP))
            return
        if not item.ok or item.leaf is None or item.signed_header is None:
            self.failures.append(_failure(loc, item.failed_step or "content_store"))
            return
        try:
            device_key = self._device_key(loc.device_id, item.leaf) if loc.kind in DEVICE_SIGNED_KINDS else None
            if loc.batch_id not in self.batches:
                self.batches[loc.batch_id] = self._batch(
                    loc.batch_id, loc.log_index, loc.checkpoint_seq, item.signed_header
                )
            if loc.checkpoint_seq is not None and loc.checkpoint_seq not in self.checkpoints:
                self.checkpoints[loc.checkpoint_seq] = self._checkpoint(loc.checkpoint_seq)
        except _Unprovable as unprovable:
            self.failures.append(_failure(loc, unprovable.step))
            return
        self.items.append(
            ItemEntry(
                loc.kind,
                loc.batch_id,
                loc.leaf_index,
                loc.device_id,
                device_key,
                item.leaf,
                tuple(item.batch_proof),
                view(loc.kind, item.content, self.query.types),
                disclosed_openings(item.leaf, item.openings, self.query.types),
                item.retime_reference,
            )
        )

    def add_batch(self, batch_id: str, signed_header: bytes, log_index: int, checkpoint_seq: int | None) -> None:
        """A batch as evidence of a gateway's unbroken chain (statements), with its log proof and checkpoint."""
        if batch_id not in self.batches:
            self.batches[batch_id] = self._batch(batch_id, log_index, checkpoint_seq, signed_header)
        if checkpoint_seq is not None and checkpoint_seq not in self.checkpoints:
            self.checkpoints[checkpoint_seq] = self._checkpoint(checkpoint_seq)
        self.evidence.add(batch_id)

    def add_cloud_key(self, public_key: bytes) -> bytes:
        """The cloud key that signs a statement (listed even when no checkpoint of the bundle used it)."""
        fingerprint = key_fingerprint(public_key)
        self.keys.setdefault(fingerprint, KeyEntry(CLOUD, CLOUD_SIGNER, bytes(public_key)))
        self.extra_keys.add(fingerprint)
        return fingerprint

    def bundle(self) -> ProofBundle:
        used = {item.batch_id for item in self.items} | self.evidence
        batches = [self.batches[b] for b in sorted(used)]
        seqs = {b.checkpoint_seq for b in batches if b.checkpoint_seq is not None}
        used_keys = {b.gateway_key for b in batches} | {i.device_key for i in self.items if i.device_key}
        used_keys |= self.extra_keys
        used_keys |= {signed_checkpoint.parse(self.checkpoints[s].signed).key_fingerprint for s in seqs}
        return ProofBundle(
            chain_id=self.chain_id,
            registry=self.registry,
            query=self.query,
            newest=self.newest if seqs else None,
            keys=tuple(self.keys[fp] for fp in sorted(used_keys)),
            checkpoints=tuple(self.checkpoints[s] for s in sorted(seqs)),
            batches=tuple(batches),
            items=tuple(self.items),
            retrieval_failures=tuple(self.failures),
        )

    # ---- the parts ------------------------------------------------------------------------------------

    def _key(self, row: models.SignerKey | None, step: str) -> bytes:
        if row is None:
            raise _Unprovable(step)
        self.keys.setdefault(row.fingerprint, KeyEntry(row.kind, row.signer_id, bytes(row.public_key)))
        return bytes(row.fingerprint)

    def _device_key(self, device_id: str, leaf: bytes) -> bytes:
        try:
            _, body = parse_leaf(leaf)
            message = parse_sign1(body)  # the fast path: a leaf is a device's canonical signed reading
        except ProtocolError as err:
            raise _Unprovable("device_signature") from err
        row = key_that_signed(self.session, DEVICE, device_id, message.signed_bytes(), message.signature)
        return self._key(row or _latest(self.session, DEVICE, device_id), "device_key")

    def _batch(self, batch_id: str, log_index: int, checkpoint_seq: int | None, signed_header: bytes) -> BatchEntry:
        try:
            message, header = parse_header(signed_header)
        except ProtocolError as err:
            raise _Unprovable("gateway_signature") from err
        row = key_that_signed(self.session, GATEWAY, header["gateway"], message.signed_bytes(), message.signature)
        gateway_key = self._key(row or _latest(self.session, GATEWAY, header["gateway"]), "gateway_signature")
        proof: tuple[bytes, ...] = ()
        if checkpoint_seq is not None:
            checkpoint = self.session.get(models.Checkpoint, checkpoint_seq)
            if checkpoint is not None:
                size = checkpoint.tree_size
                proof = _safe_proof(lambda: self.log.inclusion_proof(log_index, size))
        return BatchEntry(batch_id, signed_header, gateway_key, log_index, checkpoint_seq, proof)

    def _checkpoint(self, seq: int) -> CheckpointEntry:
        row = self.session.get(models.Checkpoint, seq)
        assert row is not None  # located from this table
        try:
            kid = signed_checkpoint.parse(row.signed).key_fingerprint
        except ProtocolError as err:
            raise _Unprovable("checkpoint_signature") from err
        key = key_by_fingerprint(self.session, kid)
        is_cloud_key = key is not None and key.kind == CLOUD and key.signer_id == CLOUD_SIGNER
        self._key(key if is_cloud_key else None, "checkpoint_signature")
        from_previous: tuple[bytes, ...] = ()
        if seq > 0:
            previous_size = self.reader.checkpoint(seq - 1).tree_size
            from_previous = _safe_proof(lambda: self.log.consistency_proof(previous_size, row.tree_size))
        to_newest: tuple[bytes, ...] = ()
        if self.newest is not None:
            newest_size = self.newest.tree_size
            to_newest = _safe_proof(lambda: self.log.consistency_proof(row.tree_size, newest_size))
        return CheckpointEntry(seq, row.signed, row.cid, from_previous, to_newest)


def _latest(session: Session, kind: SignerKindName, signer_id: str) -> models.SignerKey | None:
    """When no key of the history verifies a signature, the signer's newest key goes into the bundle, so the
    verifier reports the broken signature at its own step instead of the cloud hiding it."""
    keys = keys_of(session, kind, signer_id)
    return keys[-1] if keys else None


def _failure(loc: Located, step: str) -> RetrievalFailure:
    return RetrievalFailure(loc.kind, loc.batch_id, loc.leaf_index, loc.device_id, step)


def _safe_proof(build: Callable[[], Iterable[bytes]]) -> tuple[bytes, ...]:
    """A proof from stored log nodes; a missing or out-of-range node leaves it empty, which fails its check."""
    try:
        return tuple(build())
    except (LookupError, ValueError, ProofError):
        return ()


def build_bundle(
    session: Session, retrieved: Iterable[Retrieved], query: Query, reader: ChainReader, chain_id: int, registry: str
) -> ProofBundle:
    builder = BundleBuilder(session, query, reader, chain_id, registry)
    for item in retrieved:
        builder.add(item)
    return builder.bundle()
