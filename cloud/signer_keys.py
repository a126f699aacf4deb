"""The key history of devices, gateways and the cloud (table ``signer_keys``): every key a signer ever had.

Device.public_key and Gateway.public_key are the current key (what ingestion verifies against); this history
also holds the keys rotated out or revoked since, so a proof can name the exact key that signed an old reading
or batch. The registry contract keeps the same history on chain (a fingerprint is registered once, ever); the
routers in cloud/routers/sites.py write here in the same transaction as the signer's row, after the chain.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol.ids import (
    CLOUD_SIGNER,
    SIGNER_CLOUD,
    SIGNER_DEVICE,
    SIGNER_GATEWAY,
    SIGNER_KIND_NAMES,
    key_fingerprint,
)
from carbontrace_protocol.verify import verify_es256
from cloud import chain_facts, models

SignerKindName = Literal["device", "gateway", "cloud"]
DEVICE: SignerKindName = "device"
GATEWAY: SignerKindName = "gateway"
CLOUD: SignerKindName = "cloud"
assert SIGNER_KIND_NAMES[SIGNER_DEVICE] == DEVICE and SIGNER_KIND_NAMES[SIGNER_GATEWAY] == GATEWAY
assert SIGNER_KIND_NAMES[SIGNER_CLOUD] == CLOUD


def keys_of(session: Session, kind: SignerKindName, signer_id: str) -> list[models.SignerKey]:
    """Every key of the device or gateway ``signer_id``, oldest first (the last one is the current key
    unless the signer was revoked). Empty for an unknown signer."""
    return list(
        session.scalars(
            select(models.SignerKey)
            .where(models.SignerKey.kind == kind, models.SignerKey.signer_id == signer_id)
            .order_by(models.SignerKey.registered_at, models.SignerKey.id)
        )
    )


def key_by_fingerprint(session: Session, fingerprint: bytes) -> models.SignerKey | None:
    """The key (of any device or gateway, current or not) whose fingerprint is ``fingerprint``, if any."""
    return session.scalars(select(models.SignerKey).where(models.SignerKey.fingerprint == bytes(fingerprint))).first()


def current_key(session: Session, kind: SignerKindName, signer_id: str) -> models.SignerKey | None:
    """The signer's key that is not revoked, if any (at most one: the chain allows one active key per signer)."""
    return session.scalars(
        select(models.SignerKey)
        .where(
            models.SignerKey.kind == kind,
            models.SignerKey.signer_id == signer_id,
            models.SignerKey.revoked_at.is_(None),
        )
        .order_by(models.SignerKey.id.desc())
    ).first()


def record_registration(
    session: Session, kind: SignerKindName, signer_id: str, public_key: bytes, register_tx: str | None, at: int
) -> models.SignerKey:
    """Add a newly registered key to the history (call in the transaction that writes the signer's row)."""
    row = models.SignerKey(
        kind=kind,
        signer_id=signer_id,
        public_key=bytes(public_key),
        fingerprint=key_fingerprint(bytes(public_key)),
        registered_at=at,
        register_tx=register_tx,
    )
    session.add(row)
    session.flush()
    return row


def record_revocation(session: Session, fingerprint: bytes, revoke_tx: str, at: int) -> models.SignerKey | None:
    """Mark a key of the history revoked; None if the history does not hold it (nothing to mark)."""
    chain_facts.forget_key(fingerprint)  # the chain has the revocation now: trace must not serve the active state
    row = key_by_fingerprint(session, fingerprint)
    if row is not None and row.revoked_at is None:
        row.revoked_at = at
        row.revoke_tx = revoke_tx
    return row


def remember_cloud_key(session: Session, public_key: bytes, at: int) -> None:
    """Keep the cloud's signing key in the history (idempotent): a proof names the key of each checkpoint by
    fingerprint, and checkpoints signed before a rotation still need the old public key."""
    if key_by_fingerprint(session, key_fingerprint(public_key)) is None:
        record_registration(session, CLOUD, CLOUD_SIGNER, public_key, None, at)


def key_that_signed(
    session: Session, kind: SignerKindName, signer_id: str, signed_bytes: bytes, signature: bytes
) -> models.SignerKey | None:
    """The key of the signer's history (current or rotated out) under which ``signature`` verifies: a proof
    names that key, whichever the signer holds today."""
    for key in reversed(keys_of(session, kind, signer_id)):
        if verify_es256(key.public_key, signed_bytes, signature):
            return key
    return None
