"""chamber fluxes: the SQL index of each counted flux leaf (batch, leaf, device, sample seq range, session, QA)

A batch's flux leaves (carbontrace_protocol/batch.py, leaf type 3) are indexed like readings: where the signed
leaf is, not its figures (they stay in the sealed blob).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fluxes",
        sa.Column("batch_id", sa.String(length=100), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("leaf_index", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("session_start", sa.BigInteger(), nullable=False),
        sa.Column("session_end", sa.BigInteger(), nullable=False),
        sa.Column("qa", sa.String(20), nullable=False),
        sa.UniqueConstraint("device_id", "first_seq"),
    )
    op.create_index("ix_fluxes_device_session", "fluxes", ["device_id", "session_start"])


def downgrade() -> None:
    op.drop_index("ix_fluxes_device_session", "fluxes")
    op.drop_table("fluxes")
