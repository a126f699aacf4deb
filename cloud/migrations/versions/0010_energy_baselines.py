"""energy baselines: one counter per gateway and device instead of one per reading

Adds energy_baselines (gateway, device → the highest-sequence reading with energy the gateway sent, counted
or quarantined), filled from the existing rows, and drops readings.energy_wh and
quarantined_leaves.energy_wh: SQL then keeps no per-reading energy profile, only what the next aggregate's
baseline needs (the same counter the public aggregates show at each window's end).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "energy_baselines",
        sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
    )
    # Per (gateway, device), the row of highest seq with energy over both tables: a window query per source,
    # then the larger of the two in Python (small: one row per device).
    bind = op.get_bind()
    best: dict[tuple[str, str], tuple[int, int]] = {}
    for table in ("readings", "quarantined_leaves"):
        rows = bind.execute(
            sa.text(
                f"SELECT b.gateway_id, r.device_id, r.seq, r.energy_wh FROM {table} r "
                "JOIN batches b ON b.id = r.batch_id WHERE r.energy_wh IS NOT NULL AND r.seq IS NOT NULL"
            )
        )
        for gateway_id, device_id, seq, energy in rows:
            key = (gateway_id, device_id)
            if key not in best or seq > best[key][0]:
                best[key] = (int(seq), int(energy))
    if best:
        op.bulk_insert(
            sa.table("energy_baselines", sa.column("gateway_id"), sa.column("device_id"), sa.column("seq"),
                     sa.column("energy_wh")),
            [{"gateway_id": g, "device_id": d, "seq": s, "energy_wh": e} for (g, d), (s, e) in best.items()],
        )
    for table in ("readings", "quarantined_leaves"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("energy_wh")


def downgrade() -> None:
    # The per-reading counters are gone from SQL (the blobs keep them); the columns come back empty.
    for table in ("readings", "quarantined_leaves"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("energy_wh", sa.BigInteger(), nullable=True))
    op.drop_table("energy_baselines")
