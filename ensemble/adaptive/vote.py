"""Majority vote over short exact answers (classification labels, numbers, tool names).

Each candidate votes for its normalised answer (:func:`normalise`); a tool call votes for the
names of the tools it calls (``tool:name`` or ``tool:a,b``). The answer with the most votes
wins; a tie goes to the answer whose first vote came earliest in the members' order (first
member's first sample first), so the outcome never depends on timing. The winner is answered
with the first candidate that voted for it, as that member wrote it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ensemble.types import Candidate

_EDGE_QUOTES = "\"'`*“”‘’«»"  # quotes and markdown emphasis around a short answer
_TRAILING = ".,;:!?。"
_NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?")


def normalise(text: str) -> str:
    """The vote key of a short answer: whitespace collapsed, case folded, surrounding quotes
    and trailing punctuation dropped, and a number written canonically (``1,000.50``,
    ``+1000.5`` and ``1000.500`` are all ``1000.5``; ``-0`` is ``0``)."""
    key = " ".join(text.split()).casefold()
    previous = None
    while key != previous:  # '"42."' -> '42.' -> '42'
        previous = key
        key = key.strip(_EDGE_QUOTES + " ").rstrip(_TRAILING + " ")
    return _canonical_number(key) or key


def _canonical_number(key: str) -> str | None:
    if not key or not _NUMBER.fullmatch(key) or not any(ch.isdigit() for ch in key):
        return None
    try:
        value = Decimal(key.replace(",", ""))
    except InvalidOperation:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def vote_key(candidate: Candidate) -> str:
    """What ``candidate`` votes for."""
    if candidate.tool_calls:
        names = [str(call.get("function", {}).get("name", "")) for call in candidate.tool_calls]
        return "tool:" + ",".join(names)
    return normalise(candidate.text)


@dataclass(frozen=True)
class Vote:
    winner: Candidate  # the first candidate that voted for the winning answer
    key: str  # the winning normalised answer
    votes: int
    total: int

    @property
    def reason(self) -> str:
        return f"{self.votes} of {self.total} votes for {self.key[:40]!r}"


def majority(candidates: Sequence[Candidate]) -> Vote:
    """The most common answer among ``candidates`` (member order); ties: the earliest."""
    if not candidates:
        raise ValueError("majority of no candidates")
    keys = [vote_key(c) for c in candidates]
    tally = Counter(keys)
    # max() keeps the first maximum; iterating keys in member order makes that the earliest
    key = max(dict.fromkeys(keys), key=tally.__getitem__)
    return Vote(candidates[keys.index(key)], key, tally[key], len(candidates))


def most_votes(candidates: Sequence[Candidate]) -> int:
    """How many candidates give the most common answer (0 for none)."""
    return max(Counter(vote_key(c) for c in candidates).values(), default=0)
