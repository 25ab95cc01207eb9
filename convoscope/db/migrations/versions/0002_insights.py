"""insights, topic phrases, tracker matches, entities and app trackers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "insights",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("char_offset", sa.Integer(), nullable=False),
        sa.Column("from_member_id", sa.String(36), nullable=False),
        sa.Column("from_name", sa.Text(), nullable=True),
        sa.Column("from_user_id", sa.Text(), nullable=True),
        sa.Column("assignee_name", sa.Text(), nullable=True),
        sa.Column("assignee_is_speaker", sa.Boolean(), nullable=False),
        sa.Column("due_by", sa.String(40), nullable=True),
        sa.Column("due_text", sa.Text(), nullable=True),
        sa.Column("message_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_insights"),
    )
    op.create_index("ix_insights_conversation_id_type", "insights", ["conversation_id", "type"])
    op.create_index("ix_insights_message_id", "insights", ["message_id"])
    op.create_table(
        "message_topic_phrases",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("message_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("sentiment", sa.Float(), nullable=False),
        sa.Column("phrases", sa.JSON(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_topic_phrases"),
    )
    op.create_index("ix_message_topic_phrases_conversation_id", "message_topic_phrases", ["conversation_id"])
    op.create_table(
        "tracker_matches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("message_text", sa.Text(), nullable=False),
        sa.Column("message_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("message_end_ms", sa.BigInteger(), nullable=False),
        sa.Column("tracker_id", sa.String(64), nullable=False),
        sa.Column("tracker_name", sa.Text(), nullable=False),
        sa.Column("vocabulary", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("matched_text", sa.Text(), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracker_matches"),
    )
    op.create_index("ix_tracker_matches_conversation_id", "tracker_matches", ["conversation_id"])
    op.create_index("ix_tracker_matches_message_id", "tracker_matches", ["message_id"])
    op.create_table(
        "entities",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("message_text", sa.Text(), nullable=False),
        sa.Column("message_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sub_type", sa.String(64), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
    )
    op.create_index("ix_entities_conversation_id", "entities", ["conversation_id"])
    op.create_index("ix_entities_message_id", "entities", ["message_id"])
    op.create_table(
        "trackers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("vocabulary", sa.JSON(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trackers"),
    )
    op.create_index("ix_trackers_app_id", "trackers", ["app_id"])
    op.create_index("uq_trackers_app_id_name", "trackers", ["app_id", "name"], unique=True)


def downgrade() -> None:
    op.drop_table("trackers")
    op.drop_table("entities")
    op.drop_table("tracker_matches")
    op.drop_table("message_topic_phrases")
    op.drop_table("insights")
