"""readings without values: the SQL index says which measurements a reading carries, not what they were

Adds readings.measures (carbontrace_protocol/measures.py, filled from the value columns for existing rows)
and drops co2_ppm, temperature_centi_c, humidity_centi_pct and power_deci_w: the values stay in the sealed
batch blob. energy_wh stays (public-level; the next aggregate's baseline starts at it).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carbontrace_protocol.measures import FIELD_BITS

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DROPPED = {
    "co2_ppm": sa.Integer(),
    "temperature_centi_c": sa.Integer(),
    "humidity_centi_pct": sa.Integer(),
    "power_deci_w": sa.BigInteger(),
}


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.add_column(sa.Column("measures", sa.Integer(), nullable=False, server_default="0"))
    readings = sa.table("readings", *(sa.column(name) for name in FIELD_BITS), sa.column("measures"))
    mask = sum(
        (sa.case((readings.c[name].is_not(None), bit), else_=0) for name, bit in FIELD_BITS.items()),
        sa.literal(0),
    )
    op.execute(readings.update().values(measures=mask))
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("measures", server_default=None)
        for name in DROPPED:
            batch.drop_column(name)


def downgrade() -> None:
    # The values are gone from SQL; the columns come back empty (the blobs still hold the values).
    with op.batch_alter_table("readings") as batch:
        for name, type_ in DROPPED.items():
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.drop_column("measures")
