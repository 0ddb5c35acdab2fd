"""``blendgate export-preferences``: the gateway's own traffic as preference pairs.

Two sources in the experiment store, both needing the chats and answers that a store with
``record_transcripts: true`` keeps (table ``transcripts``):

- **shadow-judge verdicts**: each verdict compares a served answer (``request_id``) with its
  shadow run (``<request_id>:shadow``) on the same chat; the winner is chosen. Ties are
  skipped (they carry no gradient).
- **feedback** (``/v1/feedback``): completions of the same chat (same messages) with
  different mean scores form pairs, the better-scored answer chosen. One vote on one answer
  alone makes no pair.

Each line is a chosen/rejected pair in message-list form, which ``train-ranker --data`` reads::

    {"chosen": [...chat, {"role": "assistant", "content": A}], "rejected": [..., B],
     "origin": "verdict" | "feedback", ...provenance}
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from ensemble.config import StoreConfig
from ensemble.experiments.events import TranscriptEvent, VerdictEvent
from ensemble.experiments.store import ExperimentStore


@dataclass(frozen=True)
class PreferencePair:
    messages: list[dict[str, str]]  # the chat both answers reply to
    chosen: str
    rejected: str
    origin: str  # "verdict" or "feedback"
    provenance: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        def reply(text: str) -> list[dict[str, str]]:
            return [*self.messages, {"role": "assistant", "content": text}]

        return {"chosen": reply(self.chosen), "rejected": reply(self.rejected),
                "origin": self.origin, **self.provenance}


def verdict_pairs(verdicts: Iterable[VerdictEvent],
                  transcripts: dict[str, TranscriptEvent]) -> list[PreferencePair]:
    pairs = []
    for verdict in verdicts:
        served = transcripts.get(verdict.request_id)
        shadow = transcripts.get(f"{verdict.request_id}:shadow")
        if served is None or shadow is None or verdict.outcome == "tie":
            continue
        # ``outcome`` is from the shadow arm's side (``arm``) against the served one.
        better, worse = (shadow, served) if verdict.outcome == "win" else (served, shadow)
        pairs.append(PreferencePair(
            served.messages, better.text, worse.text, "verdict",
            {"experiment": verdict.experiment, "judge": verdict.judge,
             "completion_ids": [better.completion_id, worse.completion_id]}))
    return pairs


def feedback_pairs(scores: Sequence[tuple[str, int, float]],
                   transcripts: dict[str, TranscriptEvent]) -> list[PreferencePair]:
    chats: dict[str, list[tuple[TranscriptEvent, int, float]]] = defaultdict(list)
    for completion_id, votes, mean in scores:
        transcript = transcripts.get(completion_id)
        if transcript is not None:
            chats[json.dumps(transcript.messages, sort_keys=True)].append(
                (transcript, votes, mean))
    pairs = []
    for answers in chats.values():
        for (a, votes_a, mean_a), (b, votes_b, mean_b) in combinations(answers, 2):
            if mean_a == mean_b or a.text == b.text:
                continue
            (better, vb, sb), (worse, vw, sw) = sorted(
                [(a, votes_a, mean_a), (b, votes_b, mean_b)], key=lambda t: -t[2])
            pairs.append(PreferencePair(
                better.messages, better.text, worse.text, "feedback",
                {"completion_ids": [better.completion_id, worse.completion_id],
                 "scores": [sb, sw], "votes": [vb, vw]}))
    return pairs


async def export_preferences(cfg: StoreConfig, out: Path, *, verdicts: bool = True,
                             feedback: bool = True) -> dict[str, int]:
    """Write the pairs as JSON lines to ``out``; counts per origin (and transcripts read).

    Raises ``StoreUnavailable`` when the store cannot answer."""
    store = await ExperimentStore.open(cfg)
    try:
        transcripts = await store.transcripts()
        pairs = verdict_pairs(await store.verdicts(), transcripts) if verdicts else []
        if feedback:
            pairs += feedback_pairs(await store.feedback_scores(), transcripts)
    finally:
        await store.aclose()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.record(), ensure_ascii=False) + "\n")
    return {"transcripts": len(transcripts),
            "verdict": sum(p.origin == "verdict" for p in pairs),
            "feedback": sum(p.origin == "feedback" for p in pairs)}
