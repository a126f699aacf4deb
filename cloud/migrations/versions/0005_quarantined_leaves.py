"""quarantined leaves: readings of a device revoked mid-window (and its aggregate), kept but not counted

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_leaves",
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("quarantined_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("batch_id", "leaf_index"),
    )
    op.create_index("ix_quarantined_leaves_device_id", "quarantined_leaves", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_quarantined_leaves_device_id", table_name="quarantined_leaves")
    op.drop_table("quarantined_leaves")
