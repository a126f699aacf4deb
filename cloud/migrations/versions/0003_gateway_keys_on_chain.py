"""gateway keys on chain: each gateway's key registration and revocation is a registry transaction

Revision ID: 0003
Revises: 0002

Gateways registered before this revision have no registration transaction (registered_tx stays NULL):
their batches fail the verifier's on-chain gateway-key check until the operator registers their keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("status", sa.String(length=10), server_default="active", nullable=False))
        batch.add_column(sa.Column("registered_tx", sa.String(length=66), nullable=True))
        batch.add_column(sa.Column("revoked_tx", sa.String(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("revoked_tx")
        batch.drop_column("registered_tx")
        batch.drop_column("status")
