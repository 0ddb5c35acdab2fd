"""The fuser input, pinned (spec §4.2, §8 item 14) on the tiny T5 tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from ensemble.fusers.genfuser.prompt import (
    SUFFIX,
    cut_candidate,
    encode_input,
    format_input,
    split_messages,
    truncate_and_pad,
)
from ensemble.types import ChatMessage

SPEC_EXAMPLE = (
    "Instruction: </s>Input: hello</s>Candidate 0: <extra_id_0>:a</s>Candidate 1: "
    "<extra_id_1>:b</s>Summarize candidates into a better one for the given instruction:"
)
SPEC_EXAMPLE_IDS = [
    42, 43, 18, 1, 42, 36, 7, 18, 3, 12, 10, 10, 11, 1, 37, 52, 3, 61, 18, 197, 3, 18, 8, 1,
    37, 52, 3, 62, 18, 196, 3, 18, 95, 1, 3, 73, 35, 3, 28, 87, 4, 24, 22, 14, 3, 23, 7, 7,
    25, 38, 40, 5, 26, 6, 3, 34, 27, 21, 9, 24, 43, 18,
]


def test_spec_example_text_and_ids(tiny_tokenizer: Any) -> None:
    prompt = encode_input(tiny_tokenizer, "", "hello", ["a", "b"])
    assert format_input("", "hello", ["a", "b"]) == SPEC_EXAMPLE
    assert prompt.text == SPEC_EXAMPLE
    assert list(prompt.input_ids) == SPEC_EXAMPLE_IDS
    # "</s>" in the text is the EOS id; sentinels are single ids (<extra_id_i> = last id - i)
    eos = tiny_tokenizer.eos_token_id
    assert prompt.input_ids.count(eos) == 4
    assert tiny_tokenizer.convert_tokens_to_ids("<extra_id_0>") in prompt.input_ids
    assert tiny_tokenizer.convert_tokens_to_ids("<extra_id_1>") in prompt.input_ids
    # no EOS appended: the ids end with the suffix's last token, not with </s>
    assert prompt.input_ids[-1] != eos
    assert prompt.overflow == 0 and prompt.cut_candidates == ()


def test_unicode_and_empty_candidate_ids(tiny_tokenizer: Any) -> None:
    prompt = encode_input(tiny_tokenizer, "Be brief.", "Café 東京 🙂", ["naïve résumé", "", "ß"])
    assert prompt.text == (
        "Instruction: Be brief.</s>Input: Café 東京 🙂</s>Candidate 0: <extra_id_0>:naïve résumé"
        "</s>Candidate 1: <extra_id_1>:</s>Candidate 2: <extra_id_2>:ß" + SUFFIX
    )
    assert list(prompt.input_ids) == [
        42, 43, 18, 3, 2, 6, 48, 5, 27, 6, 47, 13, 1, 42, 36, 7, 18, 37, 47, 20, 3, 81, 80, 3, 2,
        1, 37, 52, 3, 61, 18, 197, 3, 18, 9, 8, 55, 21, 3, 5, 20, 89, 20, 1, 37, 52, 3, 62, 18,
        196, 3, 18, 1, 37, 52, 3, 63, 18, 195, 3, 18, 78, 1, 3, 73, 35, 3, 28, 87, 4, 24, 22, 14,
        3, 23, 7, 7, 25, 38, 40, 5, 26, 6, 3, 34, 27, 21, 9, 24, 43, 18,
    ]


def test_no_candidates_keeps_the_original_layout() -> None:
    assert format_input("", "x", []) == "Instruction: </s>Input: x</s>" + SUFFIX


def test_candidate_cut_at_128_tokens_with_ellipsis(tiny_tokenizer: Any) -> None:
    long = " ".join(["fox"] * 200)
    ids = tiny_tokenizer.encode(long, add_special_tokens=False)
    assert len(ids) > 128
    text, cut = cut_candidate(tiny_tokenizer, long, 128)
    assert cut and text == tiny_tokenizer.decode(ids[:128]) + "..."
    exact = tiny_tokenizer.decode(ids[:128])
    assert cut_candidate(tiny_tokenizer, exact, 128) == (exact, False)  # 128 tokens: kept

    candidates = ["short", long]
    before = list(candidates)
    prompt = encode_input(tiny_tokenizer, "", "q", candidates)
    assert candidates == before  # the caller's list is not written to (the original did)
    assert prompt.cut_candidates == (1,)
    assert prompt.candidates == ("short", text)
    assert f"<extra_id_1>:{text}</s>" in prompt.text


def test_long_input_pushes_candidates_out_of_the_window(tiny_tokenizer: Any) -> None:
    long_input = " ".join(["dog"] * 1500)
    prompt = encode_input(tiny_tokenizer, "", long_input, ["a", "b"])
    full = tiny_tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    truncated = tiny_tokenizer(prompt.text, add_special_tokens=False, truncation=True,
                               max_length=1024)["input_ids"]
    assert len(prompt.input_ids) == 1024
    assert list(prompt.input_ids) == truncated == full[:1024]
    assert prompt.overflow == len(full) - 1024 > 0
    sentinel = tiny_tokenizer.convert_tokens_to_ids("<extra_id_0>")
    assert sentinel in full and sentinel not in prompt.input_ids


@pytest.mark.parametrize("max_length", [16, 40])
def test_max_length_is_configurable(tiny_tokenizer: Any, max_length: int) -> None:
    prompt = encode_input(tiny_tokenizer, "", "hello", ["a", "b"], max_length=max_length)
    assert list(prompt.input_ids) == SPEC_EXAMPLE_IDS[:max_length]


def test_truncate_and_pad_trims_all_pad_columns() -> None:
    ids, mask = truncate_and_pad([[5, 6, 7], [8]], pad_id=0, max_length=16)
    assert ids == [[5, 6, 7], [8, 0, 0]]
    assert mask == [[1, 1, 1], [1, 0, 0]]


def test_truncate_and_pad_cuts_rows_longer_than_max_length() -> None:
    ids, mask = truncate_and_pad([[5, 6, 7, 9], [8]], pad_id=0, max_length=2)
    assert ids == [[5, 6], [8, 0]]
    assert mask == [[1, 1], [1, 0]]
    assert truncate_and_pad([], pad_id=0) == ([], [])


def test_split_messages_system_is_the_instruction() -> None:
    chat = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "first question"),
        ChatMessage("assistant", "first answer"),
        ChatMessage("developer", "No lists."),
        ChatMessage("user", "second question"),
    ]
    assert split_messages(chat) == ("Be brief.\nNo lists.", "second question")
    assert split_messages([ChatMessage("user", "hi")]) == ("", "hi")
    assert split_messages([ChatMessage("system", "s")]) == ("s", "")
