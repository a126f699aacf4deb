"""API keys and roles. A key is 32 random bytes (hex); only its sha256 is stored, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from carbontrace_host.secret_files import write_secret
from cloud.models import ApiKey, Enterprise, Gateway


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
    # The key's enterprise is an application the operator has not approved: the key opens nothing yet.
    pending: bool = False
    regulator_id: str | None = None  # a regulator key's own id (regulator_id_of): whose reader key it may set


def regulator_id_of(row: ApiKey) -> str:
    """A regulator's id: named by its API key row, so the key alone says which regulator is calling."""
    return f"reg-{row.id}"


def key_row(session: Session, key: str) -> ApiKey:
    """The row of a key just issued in this session."""
    session.flush()
    return session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).scalar_one()


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


API_KEY_PATTERN = re.compile(r"ct_[0-9a-f]{64}")


def has_operator_key(session: Session) -> bool:
    query = select(ApiKey.id).where(ApiKey.role == Role.OPERATOR.value, ApiKey.revoked.is_(False))
    return session.execute(query.limit(1)).first() is not None


def bootstrap_operator_key(session: Session, key_file: str | Path, now: int) -> bool:
    """Make the first operator key when the database has no valid one; returns whether it made (or adopted) one.

    The key is written once to ``key_file`` (0600 in a 0700 directory) and only its hash is stored. A file that
    already holds a key in the API-key format (a deployment's mounted secret, or a run interrupted after the write)
    is adopted instead of overwritten. Idempotent: with a valid operator key present, nothing happens."""
    if has_operator_key(session):
        return False
    path = Path(key_file)
    if path.exists():
        key = path.read_text().strip()
        if not API_KEY_PATTERN.fullmatch(key):
            raise ValueError(f"{path} does not hold an operator API key (ct_ and 64 hex digits)")
    else:
        key = new_api_key()
        write_secret(path, key + "\n", exclusive=True)
    digest = hash_key(key)
    row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if row is not None:
        raise ValueError(f"the key in {path} was revoked or belongs to another role: remove the file")
    session.add(ApiKey(key_hash=digest, role=Role.OPERATOR.value, label="bootstrap", revoked=False, created_at=now))
    return True


def rotate_operator_key(session: Session, key_file: str | Path, now: int) -> str:
    """Revoke every operator key and issue a new one, written to ``key_file`` (replacing it, 0600); returns it."""
    session.execute(update(ApiKey).where(ApiKey.role == Role.OPERATOR.value).values(revoked=True))
    key = issue_key(session, Role.OPERATOR, now, label="rotated")
    write_secret(key_file, key + "\n")
    return key


def authenticate(session: Session, key: str) -> Principal | None:
    digest = hash_key(key)
    # The lookup is by hash (an index), so timing reveals nothing about the key; the explicit
    # constant-time compare guards against a collation or driver that compares loosely.
    row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if row is None or row.revoked or not hmac.compare_digest(row.key_hash, digest):
        return None
    pending = False
    if row.enterprise_id is not None:
        approved = session.execute(select(Enterprise.approved_at).where(Enterprise.id == row.enterprise_id)).first()
        pending = approved is None or approved[0] is None
    regulator_id = regulator_id_of(row) if row.role == Role.REGULATOR.value else None
    return Principal(Role(row.role), row.enterprise_id, row.platform_id, row.gateway_id, pending, regulator_id)


def is_revoked_gateway_key(session: Session, key: str) -> bool:
    """Whether ``key`` is an API key of a gateway that was revoked (its keys were revoked with it). Answered only to
    the key's holder, as the 401's detail (carbontrace_protocol.errors.GATEWAY_REVOKED)."""
    digest = hash_key(key)
    row = session.execute(
        select(Gateway.status).join(ApiKey, ApiKey.gateway_id == Gateway.id).where(ApiKey.key_hash == digest)
    ).first()
    return row is not None and row[0] == "revoked"
