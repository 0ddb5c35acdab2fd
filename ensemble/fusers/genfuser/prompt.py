"""GenFuser's input text and token ids, as pure functions (LLM-Blender spec §4.2, §8 item 14).

The layout the fine-tuned Flan-T5 was trained on::

    Instruction: {instruction}</s>Input: {input}</s>Candidate 0: <extra_id_0>:{c0}</s>...
    </s>Summarize candidates into a better one for the given instruction:

- ``</s>`` is written as text and becomes the EOS id through the tokenizer's special tokens;
  candidate ``i`` is tagged with the sentinel ``<extra_id_i>`` (0-based, no space after ``:``).
- A candidate longer than ``candidate_max_length`` tokens is cut to that many tokens, decoded
  back with the tokenizer's default decode settings, and ``...`` is appended.
- The whole string is tokenised with no special tokens added (no trailing EOS) and cut from the
  right at ``max_length`` tokens. The input itself is never cut on its own, so a long input
  pushes the candidates and the instruction suffix out of the window, as in the original.

Unlike the original, the caller's candidate lists are never written to: cut candidates are new
strings in the returned :class:`FusePrompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ensemble.types import ChatMessage

SEPARATOR = "</s>"
SUFFIX = "</s>Summarize candidates into a better one for the given instruction:"
ELLIPSIS = "..."
CANDIDATE_MAX_LENGTH = 128
MAX_LENGTH = 1024


class Tokenizer(Protocol):
    """The slice of a transformers tokenizer these functions use."""

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: Sequence[int], **kwargs: Any) -> str: ...


@dataclass(frozen=True)
class FusePrompt:
    """One encoded fuser input."""

    text: str
    input_ids: tuple[int, ...]  # at most max_length ids, no EOS appended
    candidates: tuple[str, ...]  # as placed in the text (cut ones end with "...")
    cut_candidates: tuple[int, ...]  # indices of candidates longer than the limit
    overflow: int  # tokens dropped at the right end by the max_length window


def format_input(instruction: str, input_text: str, candidates: Sequence[str]) -> str:
    """The exact fuser text for candidates that are already cut to length."""
    block = SEPARATOR.join(
        f"Candidate {i}: <extra_id_{i}>:{text}" for i, text in enumerate(candidates)
    )
    return SEPARATOR.join(["Instruction: " + instruction, "Input: " + input_text, block]) + SUFFIX


def cut_candidate(tokenizer: Tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """``(text, False)`` when it fits in ``max_tokens`` tokens, else ``(decoded cut + "...", True)``."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]) + ELLIPSIS, True


def encode_input(
    tokenizer: Tokenizer,
    instruction: str,
    input_text: str,
    candidates: Sequence[str],
    *,
    candidate_max_length: int = CANDIDATE_MAX_LENGTH,
    max_length: int = MAX_LENGTH,
) -> FusePrompt:
    """Cut the candidates, build the text and tokenise it as the original fuser does.

    Right truncation of a single sequence without special tokens keeps the first
    ``max_length`` ids, so the ids are sliced here; the full length is kept to report the
    overflow (the tests pin this against the tokenizer's own ``truncation=True``).
    """
    placed: list[str] = []
    cut: list[int] = []
    for index, candidate in enumerate(candidates):
        text, was_cut = cut_candidate(tokenizer, candidate, candidate_max_length)
        placed.append(text)
        if was_cut:
            cut.append(index)
    text = format_input(instruction, input_text, placed)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return FusePrompt(
        text=text,
        input_ids=tuple(ids[:max_length]),
        candidates=tuple(placed),
        cut_candidates=tuple(cut),
        overflow=max(0, len(ids) - max_length),
    )


def truncate_and_pad(rows: Sequence[Sequence[int]], pad_id: int, max_length: int = MAX_LENGTH
                     ) -> tuple[list[list[int]], list[list[int]]]:
    """Cut each row to ``max_length``, then right-pad to the longest cut row.

    This is the original's "pad to max_length, trim all-pad columns per batch", which ends at
    the longest row. Returns ``(input_ids, attention_mask)`` as nested lists.
    """
    cut = [list(r[:max_length]) for r in rows]
    width = max((len(r) for r in cut), default=0)
    ids = [r + [pad_id] * (width - len(r)) for r in cut]
    mask = [[1] * len(r) + [0] * (width - len(r)) for r in cut]
    return ids, mask


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, str]:
    """Map a chat onto GenFuser's ``(instruction, input)``.

    The fuser was trained on single-turn (instruction, input) pairs, so:
    - instruction = the system and developer messages, joined by a newline ("" if none);
    - input = the last user message (the last message of any other role if there is none).
    Earlier turns are not shown to GenFuser; the candidates already answer the last turn.
    """
    instruction = "\n".join(m.content for m in messages if m.role in ("system", "developer"))
    users = [m for m in messages if m.role == "user"]
    if users:
        return instruction, users[-1].content
    others = [m for m in messages if m.role not in ("system", "developer")]
    return instruction, others[-1].content if others else ""
