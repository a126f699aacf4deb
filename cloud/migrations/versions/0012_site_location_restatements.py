"""site location and grid region (factor by rule), restatements

Sites get a location: country (ISO 3166-1), province (ISO 3166-2) and grid region (a catalogue code); their
factor is the catalogue rule's answer (carbontrace_protocol/factor_rule.py), no longer the id picked at
registration. Existing sites are all Chinese (the only catalogue so far): country CN; a site that had picked a
regional grid's factor (CN-north-*, CN-southwest-*) keeps that grid as its grid region; every other site gets
none, so the rule gives it the national average until its enterprise declares its province and grid. The old
column stays as history and is no longer read.

Restatements: each restated statement with the statement it restates (both stored under their CIDs).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The grids a pre-0012 factor id named (carbontrace_protocol/data/emission_factors.json before 0012).
_GRID_OF_OLD_FACTOR = {
    "CN-north-2023": "CN-GRID-NORTH",
    "CN-southwest-2023": "CN-GRID-SOUTHWEST",
}


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("country", sa.String(length=2), nullable=False, server_default="CN"))
        batch.add_column(sa.Column("province", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("grid_region", sa.String(length=32), nullable=True))
    sites = sa.table("sites", sa.column("emission_factor", sa.String), sa.column("grid_region", sa.String))
    for factor_id, grid in _GRID_OF_OLD_FACTOR.items():
        op.execute(sites.update().where(sites.c.emission_factor == factor_id).values(grid_region=grid))
    op.create_table(
        "restatements",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", sa.String(length=40), sa.ForeignKey("enterprises.id"), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("original_cid", sa.String(length=128), nullable=False),
        sa.Column("original_sha256", sa.String(length=64), nullable=False),
        sa.Column("restated_cid", sa.String(length=128), nullable=False, unique=True),
        sa.Column("factor_changes", sa.String(length=2000), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_restatements_enterprise_id", "restatements", ["enterprise_id"])


def downgrade() -> None:
    op.drop_index("ix_restatements_enterprise_id", "restatements")
    op.drop_table("restatements")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("grid_region")
        batch.drop_column("province")
        batch.drop_column("country")
