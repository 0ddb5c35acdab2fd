"""Build a tiny random GenFuser-shaped checkpoint, laid out like ``llm-blender/gen_fuser_3b``.

Files written (spec §2.3): config.json, generation_config.json, model.safetensors,
spiece.model (a SentencePiece unigram model trained here on a few sentences), tokenizer.json,
special_tokens_map.json (with the 100 ``<extra_id_N>`` sentinels), tokenizer_config.json.
Ids follow T5: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``<extra_id_N>`` = last id - N.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration, T5Tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Candidate answers are summarized into a better one for the given instruction.",
    "Instruction: Input: Summarize candidates into a better one.",
    "hello world, how are you today? I am fine, thanks!",
    "Café naïve résumé straße 東京 München",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation ! ? . , ; : ' \" ( ) - ...",
]
SPM_VOCAB = 160
EXTRA_IDS = 100


def train_spiece(path: Path) -> None:
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=buffer, vocab_size=SPM_VOCAB,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    path.write_bytes(buffer.getvalue())


def build_tiny_checkpoint(
    directory: Path, *, seed: int = 2, generation: dict[str, int] | None = None,
    prepend_scheme: str | None = None,
) -> Path:
    """Write the checkpoint into ``directory`` and return it. ``generation`` adds keys to
    generation_config.json (e.g. ``min_new_tokens`` to forbid an early EOS).
    ``prepend_scheme`` ("never", "first") rewrites tokenizer.json's pre-tokenizer and decoder
    to one ``Metaspace`` with that scheme: a file that deviates from T5's class defaults
    ("always", after a whitespace split)."""
    directory.mkdir(parents=True, exist_ok=True)
    train_spiece(directory / "spiece.model")
    tokenizer = T5Tokenizer.from_pretrained(str(directory), extra_ids=EXTRA_IDS)
    tokenizer.save_pretrained(str(directory))
    if prepend_scheme is not None:
        set_metaspace(directory / "tokenizer.json", prepend_scheme)
    special = {
        "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)],
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    vocab = -(-len(tokenizer) // 64) * 64  # padded like 32100 -> 32128
    config = T5Config(
        vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, initializer_factor=10.0,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config).eval()
    # Random weights pick sentinels, <pad> and the unused padded ids as often as text; zeroed
    # rows (logit 0) lose to the large random text logits, so the output is visible text.
    with torch.no_grad():
        pieces = len(tokenizer) - EXTRA_IDS
        model.lm_head.weight[pieces:] = 0
        model.lm_head.weight[[tokenizer.pad_token_id, tokenizer.unk_token_id]] = 0
    model.generation_config = GenerationConfig(
        decoder_start_token_id=0, eos_token_id=1, pad_token_id=0, **(generation or {})
    )
    model.save_pretrained(str(directory))
    return directory


def set_metaspace(path: Path, prepend_scheme: str) -> None:
    """Make ``path``'s pre-tokenizer and decoder a single Metaspace with ``prepend_scheme``."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": prepend_scheme,
                 "split": True}
    spec["pre_tokenizer"] = dict(metaspace)
    spec["decoder"] = dict(metaspace)
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
