"""Cached judge verdicts and ranker rankings of ``blendgate eval --pool``.

Revision ID: 0004_eval_scores
Revises: 0003_transcripts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_eval_scores"
down_revision = "0003_transcripts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_scores",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("run", sa.String(256), nullable=False),
        sa.Column("scorer", sa.String(256), nullable=False),
        sa.Column("prompt_id", sa.String(256), nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("elapsed_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_eval_scores_run", "eval_scores", ["run"])


def downgrade() -> None:
    op.drop_table("eval_scores")
