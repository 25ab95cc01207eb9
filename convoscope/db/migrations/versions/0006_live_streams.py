"""Leases on live streams, so a gateway replica that dies with streams open has them ended by another

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_streams",
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("connection_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("hold_ms", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name="pk_live_streams"),
    )
    op.create_index("ix_live_streams_state_due_at_ms", "live_streams", ["state", "due_at_ms"])
    op.create_index("ix_live_streams_app_id_connection_id", "live_streams", ["app_id", "connection_id"])


def downgrade() -> None:
    op.drop_index("ix_live_streams_app_id_connection_id", table_name="live_streams")
    op.drop_index("ix_live_streams_state_due_at_ms", table_name="live_streams")
    op.drop_table("live_streams")
