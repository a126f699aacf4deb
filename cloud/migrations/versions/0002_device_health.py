"""device health reported by gateways (rejection counters and sequence gaps per device)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_health",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("device_label", sa.String(length=64), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("rejections", sa.String(length=2000), nullable=False),
        sa.Column("missing", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.String(length=4000), nullable=False),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"]),
        sa.PrimaryKeyConstraint("gateway_id", "device_label"),
    )


def downgrade() -> None:
    op.drop_table("device_health")
