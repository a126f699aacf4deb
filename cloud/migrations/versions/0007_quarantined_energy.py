"""quarantined readings keep their energy counter: the baseline of their device's next aggregate starts there

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantined_leaves") as batch:
        batch.add_column(sa.Column("energy_wh", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantined_leaves") as batch:
        batch.drop_column("energy_wh")
