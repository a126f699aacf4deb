"""blob readers: the encryption public keys batch blobs are sealed to (enterprises, regulators)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_readers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=65), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("added_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_blob_readers_party", "blob_readers", ["kind", "party_id"])


def downgrade() -> None:
    op.drop_index("ix_blob_readers_party", table_name="blob_readers")
    op.drop_table("blob_readers")
