"""signer key history: every key a device or gateway ever had, so keys can rotate under the same id

Revision ID: 0004
Revises: 0003

Back-fill: one row per existing device and gateway (its current key), revoked for revoked signers. The
revocation time of those is not known here (only its transaction is): they get the time of this migration,
an upper bound; revoke_tx is the exact record. A key used by two signers cannot be on chain twice (so this
only happens for a gateway registered before 0003 with a device's key): the first row wins, in the order
devices, then gateways, and the gateway's key is left out of the history.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    signer_keys = op.create_table(
        "signer_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("signer_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=65), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("register_tx", sa.String(length=66), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoke_tx", sa.String(length=66), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_signer_keys_signer", "signer_keys", ["kind", "signer_id"])

    connection = op.get_bind()
    now = int(time.time())
    rows: list[dict[str, object]] = []
    seen: set[bytes] = set()
    for kind, table in (("device", "devices"), ("gateway", "gateways")):
        result = connection.execute(
            sa.text(f"SELECT id, public_key, status, registered_tx, revoked_tx, created_at FROM {table} ORDER BY id")
        )
        for signer_id, public_key, status, registered_tx, revoked_tx, created_at in result:
            fingerprint = hashlib.sha256(bytes(public_key)).digest()
            if fingerprint in seen:
                continue
            seen.add(fingerprint)
            revoked = status != "active"
            rows.append(
                {
                    "kind": kind,
                    "signer_id": signer_id,
                    "public_key": bytes(public_key),
                    "fingerprint": fingerprint,
                    "registered_at": int(created_at),
                    "register_tx": registered_tx,
                    "revoked_at": now if revoked else None,
                    "revoke_tx": revoked_tx if revoked else None,
                }
            )
    if rows:
        op.bulk_insert(signer_keys, rows)


def downgrade() -> None:
    op.drop_index("ix_signer_keys_signer", table_name="signer_keys")
    op.drop_table("signer_keys")
