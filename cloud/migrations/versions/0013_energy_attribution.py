"""energy attribution by measurement time: the baseline's time, and each aggregate's covered span

energy_baselines.timestamp: when the baseline reading was measured (the next aggregate's first energy run
starts there; NULL for baselines kept before, whose first run is then interpolated). aggregates.span_start /
span_end: the window widened to the energy's measurement time (views.leaf_time), so a statement selects the
aggregates whose energy was used in its period, not only those received in it; existing rows get their window.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("energy_baselines", sa.Column("timestamp", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("aggregates") as batch:
        batch.add_column(sa.Column("span_start", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("span_end", sa.BigInteger(), nullable=True))
    op.execute("UPDATE aggregates SET span_start = window_start, span_end = window_end")
    with op.batch_alter_table("aggregates") as batch:
        batch.alter_column("span_start", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("span_end", existing_type=sa.BigInteger(), nullable=False)
    op.create_index("ix_aggregates_span", "aggregates", ["span_start"])


def downgrade() -> None:
    op.drop_index("ix_aggregates_span", "aggregates")
    with op.batch_alter_table("aggregates") as batch:
        batch.drop_column("span_end")
        batch.drop_column("span_start")
    op.drop_column("energy_baselines", "timestamp")
