"""trace indexes: aggregates by device and window start, checkpoints by tree size

Trace locates a device's aggregates by window (device_id, window_start) and an enterprise's by window alone;
without an index both scanned every aggregate row. The first anchored checkpoint holding a log leaf is looked up
by tree_size. Readings already have (device_id, timestamp) and batch_id; log nodes their (level, index) key.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_aggregates_device_window", "aggregates", ["device_id", "window_start"])
    op.create_index("ix_aggregates_window", "aggregates", ["window_start"])
    op.create_index("ix_checkpoints_tree_size", "checkpoints", ["tree_size"])


def downgrade() -> None:
    op.drop_index("ix_checkpoints_tree_size", "checkpoints")
    op.drop_index("ix_aggregates_window", "aggregates")
    op.drop_index("ix_aggregates_device_window", "aggregates")
