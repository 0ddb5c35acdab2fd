"""PairRM inputs as pure functions: text hygiene, tokenization, truncation, pair rows, batching.

Spec: ``shared/reference/llm-blender-spec.md`` sections 1.2-1.4 and 3.5.

Layout of one pair row (each segment is the tokenizer's single-sequence template)::

    [CLS] <|source|> src [SEP] [CLS] <|candidate1|> A [SEP] [CLS] <|candidate2|> B [SEP]

Truncation is per example, as in the model card recipe (equal to the original collator at
batch size 1): the source segment (``"<|source|>" + source`` with [CLS]/[SEP]) is cut from the
right to ``source_max_length`` ids (1224), its [SEP] kept; each candidate segment is cut to
``candidate_max_length + (source_max_length - Ls) // 2`` ids (= floor((2048 - Ls) / 2) for
PairRM), its [SEP] kept.

Every text is tokenized once, whatever the number of pairs it appears in: candidates are
encoded as ``"<|candidate|>" + text`` and the neutral prefix id is swapped for
``<|candidate1|>``/``<|candidate2|>`` when a row is built, exactly as LLM-Blender's collator does.

Text hygiene (:func:`neutralise`), applied to every source and candidate text before it is
glued to its prefix:

1. every literal ``[SEP]`` becomes one space (what the original collator does);
2. every other special or added token string of the tokenizer (``<|source|>``,
   ``<|candidate1|>``, ``<|candidate2|>``, ``<|candidate|>``, ``[CLS]``, ``[PAD]``, ``[MASK]``,
   ``[UNK]``) gets one space inserted after its first character (``<|source|>`` ->
   ``< |source|>``, ``[CLS]`` -> ``[ CLS]``), so it tokenizes as ordinary text. Without this a
   user could plant a second prefix id in a row (the gather would crash or read the wrong vector)
   or a fake segment boundary. Texts that contain none of these strings are untouched, so their
   ids equal the original's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from ensemble.rankers.pairrm.model import PrefixIds
from ensemble.types import ChatMessage

SOURCE_TOKEN = "<|source|>"
CANDIDATE1_TOKEN = "<|candidate1|>"
CANDIDATE2_TOKEN = "<|candidate2|>"
CANDIDATE_TOKEN = "<|candidate|>"
PROMPT_TOKENS = (SOURCE_TOKEN, CANDIDATE1_TOKEN, CANDIDATE2_TOKEN, CANDIDATE_TOKEN)

# compare_conversations' instruction, typo included (spec 3.5).
CONVERSATION_INSTRUCTION = (
    "Finish the following coversation in each i-th turn by filling in <Response i> with your "
    "response."
)


# ----------------------------------------------------------------------------- text hygiene


def reserved_strings(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    """Special and added token strings of ``tokenizer`` that user text must not contain."""
    found = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab()) | set(PROMPT_TOKENS)
    found.discard("[SEP]")
    return tuple(sorted((s for s in found if len(s) > 1), key=len, reverse=True))


def neutralise(text: str, reserved: Iterable[str]) -> str:
    """``[SEP]`` -> space; other reserved strings broken by a space after their first char."""
    text = text.replace("[SEP]", " ")
    reserved = tuple(reserved)
    changed = True
    while changed:  # a fixpoint: breaking one string can never form another, but be sure
        changed = False
        for token in reserved:
            if token in text:
                text = text.replace(token, token[0] + " " + token[1:])
                changed = True
    return text


def join_source(instruction: str | None, input_text: str) -> str:
    """LLM-Blender's source: instruction immediately followed by the input, no separator."""
    return (instruction or "") + input_text


# ----------------------------------------------------------------------------- chat -> source


@dataclass(frozen=True)
class ChatPrompt:
    """A chat rendered for a pairwise ranker: the source and how to wrap each candidate.

    Single turn: ``source`` = system text + user text (system as LLM-Blender's instruction
    prefix, no separator) and candidates are used raw, as in ``Blender.rank``. Multi-turn: the
    ``compare_conversations`` template (spec 3.5); each candidate becomes the earlier assistant
    turns plus itself as the last ``<Response k>``. ``prior_responses`` holds those turns.
    """

    source: str
    multi_turn: bool = False
    prior_responses: tuple[str, ...] = ()

    def candidate(self, reply: str) -> str:
        """The candidate text PairRM sees for ``reply``."""
        if not self.multi_turn:
            return reply
        turns = [*self.prior_responses, reply]
        return "\n".join(f"<Response {k}>: {text}" for k, text in enumerate(turns, start=1))


def chat_prompt(messages: Sequence[ChatMessage]) -> ChatPrompt:
    """Render chat ``messages`` (ending with the user turn being answered) for PairRM.

    ``system``/``developer`` messages are joined (newline) into a prefix placed before everything
    else; ``tool`` messages are ignored; consecutive user (or assistant) messages are merged with
    a newline. One user turn -> raw user text; more -> the conversation template.
    """
    system = "\n".join(m.content for m in messages if m.role in ("system", "developer"))
    turns: list[tuple[str, str]] = []  # (role, text), roles alternating
    for m in messages:
        if m.role not in ("user", "assistant"):
            continue
        if turns and turns[-1][0] == m.role:
            turns[-1] = (m.role, turns[-1][1] + "\n" + m.content)
        else:
            turns.append((m.role, m.content))
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", ""))
    users = [text for role, text in turns if role == "user"]
    answers = tuple(text for role, text in turns if role == "assistant")
    if len(users) <= 1:
        return ChatPrompt(source=join_source(system, users[0] if users else ""))
    if len(answers) >= len(users):
        answers = answers[: len(users) - 1]  # a trailing assistant turn is being re-ranked
    body = "\n".join(
        f"USER: {text}\nAssistant: <Response {k}>" for k, text in enumerate(users, start=1)
    )
    return ChatPrompt(
        source=join_source(system + CONVERSATION_INSTRUCTION, body),
        multi_turn=True,
        prior_responses=answers,
    )


# ----------------------------------------------------------------------------- token ids


def encode_segments(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prefix: str
) -> list[list[int]]:
    """``[CLS] prefix text [SEP]`` ids per (already neutralised) text, not truncated."""
    if not texts:
        return []
    encoded = tokenizer([prefix + t for t in texts], add_special_tokens=True, verbose=False)
    return [list(ids) for ids in encoded["input_ids"]]


def truncate_segment(ids: Sequence[int], max_length: int) -> list[int]:
    """Right truncation that keeps the final [SEP], like the tokenizer's ``truncation=True``."""
    if len(ids) <= max_length:
        return list(ids)
    return [*ids[: max_length - 1], ids[-1]]


def candidate_budget(source_length: int, source_max_length: int, candidate_max_length: int) -> int:
    """floor((total - Ls) / 2) with total = source_max + 2 * candidate_max (2048 for PairRM)."""
    return candidate_max_length + (source_max_length - source_length) // 2


def pair_row(
    source_ids: Sequence[int],
    left_ids: Sequence[int],
    right_ids: Sequence[int],
    prefix_ids: PrefixIds,
    *,
    source_max_length: int,
    candidate_max_length: int,
) -> list[int]:
    """One row: truncated source + left (as candidate1) + right (as candidate2).

    ``left_ids``/``right_ids`` come from :func:`encode_segments` with the ``<|candidate|>``
    prefix at index 1, which is replaced here.
    """
    source = truncate_segment(source_ids, source_max_length)
    budget = candidate_budget(len(source), source_max_length, candidate_max_length)
    left = truncate_segment(left_ids, budget)
    right = truncate_segment(right_ids, budget)
    left[1], right[1] = prefix_ids.candidate1, prefix_ids.candidate2
    return source + left + right


# ----------------------------------------------------------------------------- batching


def length_sorted_batches(
    lengths: Sequence[int], max_rows: int, max_tokens: int | None = None,
) -> list[list[int]]:
    """Row indices grouped longest first (padding stays small).

    A group holds at most ``max_rows`` rows and, when ``max_tokens`` is set, at most that many
    padded tokens (rows x its first, longest row): attention memory grows with rows x width², so
    long rows go in smaller groups. A row longer than ``max_tokens`` runs alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for index in order:
        group = groups[-1] if groups else None
        if group is not None and len(group) < max_rows and (
            max_tokens is None or (len(group) + 1) * lengths[group[0]] <= max_tokens
        ):
            group.append(index)
        else:
            groups.append([index])
    return groups


def distinct_rows(rows: Sequence[Sequence[int]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """The distinct rows in a canonical order, and for each input row its index among them.

    Canonical = longest first, then by token ids. A forward pass over these rows depends only on
    the SET of rows, never on the order the caller built them in, and identical rows run once:
    on some CPUs two identical rows of one batch differ in the last bits, which would break an
    exact tie (duplicate candidates, ``compare(a, a)``) or the antisymmetry of swapping A and B.
    """
    keys = [tuple(r) for r in rows]
    distinct = sorted(set(keys), key=lambda row: (-len(row), row))
    position = {row: i for i, row in enumerate(distinct)}
    return distinct, [position[k] for k in keys]


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest row: input_ids [B, L] (int64) and attention_mask [B, L]."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = 1
    return ids, mask
