"""Initial experiment store: completions, verdicts, feedback, eval answers.

Revision ID: 0001
Revises:
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
        "completions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("experiment", sa.String(256)),
        sa.Column("arm", sa.String(64)),
        sa.Column("user_hash", sa.String(64)),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("members", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_completions_experiment_arm", "completions", ["experiment", "arm"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("baseline_arm", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("baseline_score", sa.Float, nullable=False),
        sa.Column("judge", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_verdicts_experiment", "verdicts", ["experiment"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("completion_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("experiment", sa.String(256)),
        sa.Column("arm", sa.String(64)),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rating", sa.Integer),
        sa.Column("thumbs", sa.String(8)),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_feedback_completion_id", "feedback", ["completion_id"])
    op.create_index("ix_feedback_experiment", "feedback", ["experiment"])
    op.create_table(
        "eval_answers",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("run", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("prompt_id", sa.String(256), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_eval_answers_run", "eval_answers", ["run"])


def downgrade() -> None:
    for table in ("eval_answers", "feedback", "verdicts", "completions"):
        op.drop_table(table)
