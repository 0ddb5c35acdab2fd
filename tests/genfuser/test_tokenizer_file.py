"""GenFuser tokenises with the checkpoint's own tokenizer.json, not with T5's class defaults.

The checkpoint here has a tokenizer.json whose pre-tokenizer deviates from the T5 defaults
(``Metaspace`` with ``prepend_scheme: never``). The original llm-blender loaded that file
verbatim, so its ids are what ``tokenizers.Tokenizer.from_file`` gives; transformers 5's
``AutoTokenizer`` rebuilds the pipeline from class defaults and differs from the first token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer

from ensemble.config import GenFuserConfig
from ensemble.fusers.genfuser import GenFuser
from ensemble.fusers.genfuser.model import load_fuser
from ensemble.fusers.genfuser.prompt import encode_input
from ensemble.types import ChatMessage, SamplingParams
from tests.genfuser.tiny_t5 import EXTRA_IDS, build_tiny_checkpoint

# spec 4.2's example: instruction "", input "hello", candidates "a", "b"
SPEC_TEXT = ("Instruction: </s>Input: hello</s>Candidate 0: <extra_id_0>:a</s>"
             "Candidate 1: <extra_id_1>:b</s>"
             "Summarize candidates into a better one for the given instruction:")
TEXTS = [
    SPEC_TEXT,
    "hello world, how are you today?",
    "  leading spaces and Café naïve résumé straße 東京",
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module")
def never_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("gen_fuser_never"),
                                 prepend_scheme="never")


@pytest.fixture(scope="module")
def file_tokenizer(never_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(never_dir / "tokenizer.json"))


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def test_the_checkpoint_really_deviates_from_the_t5_defaults(
    never_dir: Path, tiny_fuser_dir: Path, file_tokenizer: Tokenizer
) -> None:
    default = Tokenizer.from_file(str(tiny_fuser_dir / "tokenizer.json"))
    assert _ids(file_tokenizer, "hello world") != _ids(default, "hello world")


def test_ids_are_the_tokenizer_json_ids(never_dir: Path, file_tokenizer: Tokenizer) -> None:
    loaded = load_fuser(str(never_dir), device="cpu")
    for text in TEXTS:
        assert loaded.tokenizer(text, add_special_tokens=False)["input_ids"] == _ids(
            file_tokenizer, text), text
    # special tokens come from the checkpoint too
    assert loaded.pad_token_id == 0 and loaded.eos_token_id == 1
    assert loaded.tokenizer.unk_token_id == 2
    vocab = file_tokenizer.get_vocab_size()
    assert loaded.tokenizer.convert_tokens_to_ids("<extra_id_0>") == vocab - 1
    assert loaded.tokenizer.convert_tokens_to_ids(f"<extra_id_{EXTRA_IDS - 1}>") == vocab - EXTRA_IDS


def _spec_layout(file_tokenizer: Tokenizer) -> list[int]:
    """Spec 4.2 built piece by piece: ``</s>`` is the EOS id, ``<extra_id_i>`` its sentinel id,
    the text between them is encoded by tokenizer.json, and no EOS is appended."""
    eos = file_tokenizer.token_to_id("</s>")
    extra = [file_tokenizer.token_to_id(f"<extra_id_{i}>") for i in range(2)]
    enc = lambda text: _ids(file_tokenizer, text)
    return (enc("Instruction: ") + [eos] + enc("Input: hello") + [eos]
            + enc("Candidate 0: ") + [extra[0]] + enc(":a") + [eos]
            + enc("Candidate 1: ") + [extra[1]] + enc(":b") + [eos]
            + enc("Summarize candidates into a better one for the given instruction:"))


def test_prompt_ids_follow_the_spec_layout(never_dir: Path, file_tokenizer: Tokenizer) -> None:
    loaded = load_fuser(str(never_dir), device="cpu")
    prompt = encode_input(loaded.tokenizer, "", "hello", ["a", "b"])
    assert prompt.text == SPEC_TEXT
    assert list(prompt.input_ids) == _ids(file_tokenizer, SPEC_TEXT) == _spec_layout(file_tokenizer)
    assert prompt.input_ids[-1] != loaded.eos_token_id


async def test_the_model_receives_the_spec_ids(never_dir: Path, file_tokenizer: Tokenizer) -> None:
    """End to end through GenFuser.fuse: the encoder's input ids are the spec layout's."""
    fuser = await GenFuser.load(GenFuserConfig(checkpoint=str(never_dir), device="cpu",
                                               num_beams=1, max_new_tokens=2))
    seen: list[list[int]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if isinstance(ids, torch.Tensor):
            seen.extend(row.tolist() for row in ids)

    handle = fuser.loaded.model.get_encoder().register_forward_pre_hook(record, with_kwargs=True)
    try:
        stream = await fuser.fuse([ChatMessage("user", "hello")], ["a", "b"], SamplingParams())
        _ = [delta async for delta in stream.deltas]
    finally:
        handle.remove()
        await fuser.aclose()
    assert seen == [_spec_layout(file_tokenizer)]
