"""contractual instruments for market-based Scope 2

contractual_instruments: each certificate or contract (GEC, REC, GO, I-REC, PPA; carbontrace_protocol/
instruments.py) an enterprise registered for one of its sites: volume in Wh, delivery period, emission rate,
evidence hash and the sha256 of the canonical record statements carry. Indexed by (issuer, instrument_id) so
a registration finds an overlapping reuse of the same instrument (double counting) in one lookup.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contractual_instruments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("enterprise_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("instrument_id", sa.String(length=128), nullable=False),
        sa.Column("volume_wh", sa.BigInteger(), nullable=False),
        sa.Column("delivery_start", sa.BigInteger(), nullable=False),
        sa.Column("delivery_end", sa.BigInteger(), nullable=False),
        sa.Column("rate_e4", sa.Integer(), nullable=False),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.ForeignKeyConstraint(["enterprise_id"], ["enterprises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_sha256"),
    )
    op.create_index("ix_contractual_instruments_site_id", "contractual_instruments", ["site_id"])
    op.create_index("ix_contractual_instruments_enterprise_id", "contractual_instruments", ["enterprise_id"])
    op.create_index("ix_contractual_instruments_identity", "contractual_instruments", ["issuer", "instrument_id"])


def downgrade() -> None:
    op.drop_index("ix_contractual_instruments_identity", "contractual_instruments")
    op.drop_index("ix_contractual_instruments_enterprise_id", "contractual_instruments")
    op.drop_index("ix_contractual_instruments_site_id", "contractual_instruments")
    op.drop_table("contractual_instruments")
