"""Who a batch blob is sealed to, and the cloud's side of sealing and opening.

Readers entitled by default (docs/protocol.md, "Sealed blobs"): the cloud itself (its encryption key file, to
serve trace answers), the batch's enterprise and every registered regulator, each by its active key in the
``blob_readers`` table. Adding, rotating and revoking a reader key changes the recipients of batches sealed
from then on only: a blob sealed before keeps the recipients it was sealed to (its bytes, and so its CID, are
fixed), so a revoked key still opens the earlier blobs it was given and none after.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol import sealed_blob
from carbontrace_protocol.ids import key_fingerprint
from cloud import models

ENTERPRISE = "enterprise"
REGULATOR = "regulator"
READER_KINDS = (ENTERPRISE, REGULATOR)


class ReaderError(ValueError):
    """A reader command that cannot be done (unknown party, key used before, no active key)."""


def active_reader(session: Session, kind: str, party_id: str) -> models.BlobReader | None:
    return session.scalars(
        select(models.BlobReader).where(
            models.BlobReader.kind == kind,
            models.BlobReader.party_id == party_id,
            models.BlobReader.revoked_at.is_(None),
        )
    ).first()


def list_readers(session: Session, include_revoked: bool = False) -> list[models.BlobReader]:
    stmt = select(models.BlobReader).order_by(models.BlobReader.id)
    if not include_revoked:
        stmt = stmt.where(models.BlobReader.revoked_at.is_(None))
    return list(session.scalars(stmt))


def _check_new_key(session: Session, kind: str, party_id: str, public_key: bytes) -> bytes:
    if kind not in READER_KINDS:
        raise ReaderError(f"reader kind must be one of {READER_KINDS}, not {kind!r}")
    if not party_id or len(party_id) > 64:
        raise ReaderError("reader id must be 1 to 64 characters")
    sealed_blob.load_public_key(public_key)  # a P-256 point, or MalformedSealedBlob
    if kind == ENTERPRISE and session.get(models.Enterprise, party_id) is None:
        raise ReaderError(f"no enterprise {party_id!r}")
    fingerprint = key_fingerprint(public_key)
    used = session.scalars(select(models.BlobReader).where(models.BlobReader.fingerprint == fingerprint)).first()
    if used is not None:
        raise ReaderError(f"key {fingerprint.hex()} is already registered (reader {used.kind} {used.party_id})")
    return fingerprint


def add_reader(session: Session, kind: str, party_id: str, public_key: bytes, now: int) -> models.BlobReader:
    """Register a reader's encryption key; refused if the party has an active key already (use rotate)."""
    fingerprint = _check_new_key(session, kind, party_id, public_key)
    if active_reader(session, kind, party_id) is not None:
        raise ReaderError(f"{kind} {party_id!r} has an active key: rotate it instead")
    row = models.BlobReader(
        kind=kind, party_id=party_id, public_key=bytes(public_key), fingerprint=fingerprint, added_at=now
    )
    session.add(row)
    session.flush()
    return row


def rotate_reader(session: Session, kind: str, party_id: str, public_key: bytes, now: int) -> models.BlobReader:
    """Replace the party's active key: batches sealed from now on go to the new key only."""
    fingerprint = _check_new_key(session, kind, party_id, public_key)
    current = active_reader(session, kind, party_id)
    if current is None:
        raise ReaderError(f"{kind} {party_id!r} has no active key: add one")
    current.revoked_at = now
    row = models.BlobReader(
        kind=kind, party_id=party_id, public_key=bytes(public_key), fingerprint=fingerprint, added_at=now
    )
    session.add(row)
    session.flush()
    return row


def revoke_reader(session: Session, kind: str, party_id: str, now: int) -> models.BlobReader:
    """Stop sealing to the party: batches sealed from now on leave it out (earlier ones keep its entry)."""
    current = active_reader(session, kind, party_id)
    if current is None:
        raise ReaderError(f"{kind} {party_id!r} has no active key")
    current.revoked_at = now
    session.flush()
    return current


def recipient_keys(session: Session, enterprise_id: str) -> list[bytes]:
    """The active reader keys a batch of ``enterprise_id`` is sealed to (besides the cloud's own)."""
    rows = session.scalars(
        select(models.BlobReader.public_key)
        .where(
            models.BlobReader.revoked_at.is_(None),
            ((models.BlobReader.kind == ENTERPRISE) & (models.BlobReader.party_id == enterprise_id))
            | (models.BlobReader.kind == REGULATOR),
        )
        .order_by(models.BlobReader.id)
    )
    return [bytes(k) for k in rows]


@dataclass
class BlobSealer:
    """The cloud's encryption key: seals every batch blob to it and the entitled readers, and opens them.

    ``retired``: the cloud's earlier keys (cloud/encryption_keys.py), which only open the blobs sealed to them."""

    cloud_key: ec.EllipticCurvePrivateKey
    retired: tuple[ec.EllipticCurvePrivateKey, ...] = ()

    @classmethod
    def from_int(cls, private_key: int, retired: list[int] | None = None) -> BlobSealer:
        keys = tuple(sealed_blob.private_key_from_int(k) for k in retired or ())
        return cls(sealed_blob.private_key_from_int(private_key), keys)

    @property
    def public_key(self) -> bytes:
        return sealed_blob.public_key_bytes(self.cloud_key)

    def seal(self, session: Session, site_id: str, batch_id: str, blob: bytes) -> bytes:
        site = session.get(models.Site, site_id)
        if site is None:
            raise ReaderError(f"no site {site_id!r}")
        readers = [self.public_key, *recipient_keys(session, site.enterprise_id)]
        return sealed_blob.seal(blob, batch_id, readers)

    def open(self, stored: bytes, batch_id: str) -> bytes:
        """The plaintext batch blob of ``stored``. A plaintext batch stored before sealing existed is returned
        as it is (its CID, checked by the content store, still ties it to the index)."""
        if not sealed_blob.is_sealed(stored):
            return stored
        envelope = sealed_blob.parse(stored)
        # the key the envelope names a recipient (the current one, or the retired one it was sealed to)
        named = [k for k in (self.cloud_key, *self.retired) if _fingerprint(k) in envelope.fingerprints]
        return sealed_blob.open_sealed(envelope, named[0] if named else self.cloud_key, batch_id)


def _fingerprint(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key_fingerprint(sealed_blob.public_key_bytes(key))
