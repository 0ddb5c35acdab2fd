"""``RowSink``: token-by-token text deltas whose concatenation is the decoded text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ensemble.fusers.genfuser.generate import FuseOutcome, RowSink
from ensemble.types import TextDelta, Usage


class PieceTokenizer:
    """Decodes ids by joining fixed pieces (enough to script partial characters)."""

    def __init__(self, pieces: dict[int, str]) -> None:
        self.pieces = pieces

    def decode(self, ids: Sequence[int], **kwargs: Any) -> str:
        return "".join(self.pieces[i] for i in ids)


def _stream(tokenizer: Any, ids: Sequence[int], final: str) -> list[TextDelta]:
    deltas: list[TextDelta] = []
    sink = RowSink(tokenizer, deltas.append)
    for token in ids:
        sink.push(token)
    sink.close(FuseOutcome(text=final, finish_reason="stop", usage=Usage(3, len(ids))))
    sink.close(FuseOutcome(text="ignored", finish_reason="length", usage=Usage()))  # once only
    return deltas


def test_real_tokenizer_deltas_add_up(tiny_tokenizer: Any) -> None:
    text = "hello world, how are you today? I am fine, thanks!"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    final = tiny_tokenizer.decode(ids, skip_special_tokens=True)
    deltas = _stream(tiny_tokenizer, ids, final)
    assert "".join(d.text for d in deltas) == final
    assert len(deltas) > 5
    assert [d.finish_reason for d in deltas].count("stop") == 1 and deltas[-1].usage is not None
    assert not any(d.text.endswith(" ") for d in deltas[:-1])  # trailing spaces are held


def test_replacement_character_is_held_only_while_trailing() -> None:
    tokenizer = PieceTokenizer({1: "a", 2: "\ufffd", 3: "b", 4: " c"})
    deltas = _stream(tokenizer, [1, 2, 3, 4], "a\ufffdb c")
    assert [d.text for d in deltas] == ["a", "\ufffdb", " c", ""]
