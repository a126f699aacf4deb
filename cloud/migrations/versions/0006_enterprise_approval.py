"""enterprise approval: an application is a pending row until the operator approves it (and registers it on chain)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enterprises") as batch:
        batch.add_column(sa.Column("approved_at", sa.BigInteger(), nullable=True))
    # Enterprises from before approval existed were registered on chain at application: approved then.
    op.execute("UPDATE enterprises SET approved_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("enterprises") as batch:
        batch.drop_column("approved_at")
