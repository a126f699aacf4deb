"""API keys and roles. A key is 32 random bytes (hex); only its sha256 is stored, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.models import ApiKey


class Role(StrEnum):
    OPERATOR = "operator"
    REGULATOR = "regulator"
    ENTERPRISE = "enterprise"
    PLATFORM = "platform"
    SITE_ENGINEER = "site_engineer"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the one tenant the key is scoped to (if any)."""

    role: Role
    enterprise_id: str | None = None
    platform_id: str | None = None
    gateway_id: str | None = None


def new_api_key() -> str:
    return "ct_" + secrets.token_hex(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def issue_key(
    session: Session,
    role: Role,
    now: int,
    *,
    enterprise_id: str | None = None,
    platform_id: str | None = None,
    gateway_id: str | None = None,
    label: str = "",
) -> str:
    """Create a key row and return the key itself, the only time it is ever visible."""
    key = new_api_key()
    session.add(
        ApiKey(
            key_hash=hash_key(key),
            role=role.value,
            label=label,
            enterprise_id=enterprise_id,
            platform_id=platform_id,
            gateway_id=gateway_id,
            revoked=False,
            created_at=now,
        )
    )
    return key


def revoke_gateway_keys(session: Session, gateway_id: str) -> None:
    """Every API key of a gateway stops working (its signing key was revoked on chain)."""
    session.execute(update(ApiKey).where(ApiKey.gateway_id == gateway_id).values(revoked=True))


def ensure_operator_key(session: Session, key: str, now: int) -> None:
    """Make the configured admin key a valid operator key (idempotent)."""
    digest = hash_key(key)
    if session.execute(select(ApiKey.id).where(ApiKey.key_hash == digest)).first() is None:
        session.add(
            ApiKey(key_hash=digest, role=Role.OPERATOR.value, label="admin bootstrap", revoked=False, created_at=now)
        )


def authenticate(session: Session, key: str) -> Principal | None:
    digest = hash_key(key)
    # The lookup is by hash (an index), so timing reveals nothing about the key; the explicit
    # constant-time compare guards against a collation or driver that compares loosely.
    row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if row is None or row.revoked or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(Role(row.role), row.enterprise_id, row.platform_id, row.gateway_id)
