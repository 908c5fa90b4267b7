"""The ASP 1.1 history layout: conversations and their append-only exchanges.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asp_conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_asp_conversations_user_bound", "asp_conversations", ["user_id", "bound_at"])
    op.create_table(
        "asp_exchanges",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("conversation_id", sa.String(64), sa.ForeignKey("asp_conversations.id"), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("finish_reason", sa.String(16), nullable=False),
        sa.Column("messages_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_asp_exchanges_conversation", "asp_exchanges", ["conversation_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_asp_exchanges_conversation", "asp_exchanges")
    op.drop_table("asp_exchanges")
    op.drop_index("ix_asp_conversations_user_bound", "asp_conversations")
    op.drop_table("asp_conversations")
