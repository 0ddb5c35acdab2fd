"""Tiny starting points for training tests, built once per session.

- ``tiny_pairrm_dir``: the tiny PairRM-hf checkpoint of ``tests/pairrm/conftest.py``, as its
  ``lively_pairrm_dir`` (encoder weights at std 0.3: at the default init the prompt tokens
  barely see the text, so only a position bias could be learnt);
- ``tiny_bert_dir``: a random 2-layer BERT encoder with a WordPiece tokenizer trained here
  (the layout of ``all-MiniLM-L6-v2``: config.json, model.safetensors, tokenizer.json);
- ``preference_file``: a learnable chosen/rejected JSONL (chosen answers talk about
  attention, rejected ones about embeddings), 60 pairs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.fixtures.torch_threads import one_torch_thread
from tests.pairrm.conftest import lively_pairrm_dir, tiny_checkpoints

__all__ = ["lively_pairrm_dir", "one_torch_thread", "tiny_checkpoints"]  # shared fixtures

GOOD = "the attention layer returns hidden states"
BAD = "embedding of the input ids"


@pytest.fixture(scope="session")
def tiny_pairrm_dir(lively_pairrm_dir: Path) -> Path:
    return lively_pairrm_dir


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import transformers.models.deberta_v2.modeling_deberta_v2 as corpus_module
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(Path(corpus_module.__file__).read_text().splitlines(),
                                  trainers.WordPieceTrainer(vocab_size=400,
                                                            special_tokens=specials))
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(5)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=256, pad_token_id=0)
    BertModel(config).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def preference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("prefs") / "pairs.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(60):
            chosen, rejected = f"{GOOD} " * rng.randint(1, 3), f"{BAD} " * rng.randint(1, 3)
            handle.write(json.dumps({"prompt": f"question {i} about the model",
                                     "chosen": chosen.strip(), "rejected": rejected.strip()})
                         + "\n")
    return path
