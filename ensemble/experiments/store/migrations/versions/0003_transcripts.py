"""Transcripts: each completion's chat and answer, when ``store.record_transcripts`` is on.

Revision ID: 0003_transcripts
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_transcripts"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("completion_id", sa.String(128), primary_key=True),
        sa.Column("messages", sa.JSON, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transcripts")
