"""Tables of the experiment store. Changing one needs a new migration in ``migrations/``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class CompletionRow(Base):
    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    experiment: Mapped[str | None] = mapped_column(String(256))
    arm: Mapped[str | None] = mapped_column(String(64))
    user_hash: Mapped[str | None] = mapped_column(String(64))
    latency_s: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    members: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_completions_experiment_arm", "experiment", "arm"),)


class VerdictRow(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment: Mapped[str] = mapped_column(String(256), index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    arm: Mapped[str] = mapped_column(String(64))
    baseline_arm: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    baseline_score: Mapped[float] = mapped_column(Float)
    judge: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    completion_id: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str] = mapped_column(String(256))
    experiment: Mapped[str | None] = mapped_column(String(256), index=True)
    arm: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    rating: Mapped[int | None] = mapped_column(Integer)
    thumbs: Mapped[str | None] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class TranscriptRow(Base):
    __tablename__ = "transcripts"

    completion_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class EvalAnswerRow(Base):
    __tablename__ = "eval_answers"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run: Mapped[str] = mapped_column(String(256), index=True)
    model: Mapped[str] = mapped_column(String(256))
    prompt_id: Mapped[str] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    latency_s: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


class KeyUsageRow(Base):
    __tablename__ = "key_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_key_usage_key_created_at", "key", "created_at"),)


class EvalScoresRow(Base):
    __tablename__ = "eval_scores"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run: Mapped[str] = mapped_column(String(256), index=True)
    scorer: Mapped[str] = mapped_column(String(256))
    prompt_id: Mapped[str] = mapped_column(String(256))
    scores: Mapped[list[float]] = mapped_column(JSON)
    elapsed_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
