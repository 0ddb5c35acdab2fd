"""Tiny random PairRM checkpoints in exactly the two public layouts (spec section 2).

The checkpoints come from :mod:`ensemble.rankers.pairrm.tiny` (how they are made: its
docstring); the reward models below are built here.

Fixtures (session scoped, built once):

- ``tiny_pairrm_hf_dir``: the ``llm-blender/PairRM-hf`` layout;
- ``tiny_pairrm_original_dir``: the ``llm-blender/PairRM`` layout (ranker config.json whose
  ``model_name`` points at ``tiny_backbone_dir``);
- ``tiny_backbone_dir``: a deberta-v2 ``config.json`` with a larger vocab (the loader resizes);
- ``tiny_hf_cache``: (cache_dir, repo id) holding the -hf files in the hub cache layout;
- ``tiny_pairrm``: a loaded :class:`PairRM` (fp32, CPU) from the -hf dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ensemble.rankers.pairrm.tiny import backbone_config, build_tiny_checkpoints


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_checkpoints(tmp_path_factory.mktemp("pairrm"))


@pytest.fixture(scope="session")
def tiny_pairrm_hf_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["hf"]


@pytest.fixture(scope="session")
def tiny_pairrm_original_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["original"]


@pytest.fixture(scope="session")
def tiny_backbone_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["backbone"]


@pytest.fixture(scope="session")
def tiny_hf_cache(tiny_checkpoints: dict[str, Path]) -> tuple[Path, str]:
    """(cache_dir, repo_id) with the -hf files under models--org--name/snapshots/<rev>/."""
    cache = tiny_checkpoints["root"] / "hf-cache"
    repo_id, revision = "llm-blender/PairRM-hf", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--llm-blender--PairRM-hf"
    shutil.copytree(tiny_checkpoints["hf"], repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return cache, repo_id


@pytest.fixture(scope="session")
def lively_pairrm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """The -hf checkpoint with encoder matrices redrawn at std 0.3 (instead of 0.02).

    At the default init every hidden state at a prompt token is almost its own embedding, so
    all candidates score alike (score gaps ~1e-4) and no ranking question can be asked of it.
    With livelier attention the prompt tokens see the text: logits of a few units and score
    gaps of about 1, which low-precision arithmetic must not reorder (tests/pairrm/test_cuda.py).
    """
    directory = tiny_checkpoints["root"] / "PairRM-hf-lively"
    if not directory.exists():
        shutil.copytree(tiny_checkpoints["hf"], directory)
        enliven(directory)
    return directory


def enliven(directory: Path) -> None:
    """Redraw the encoder matrices of ``directory/model.safetensors`` at std 0.3 (seeded)."""
    from safetensors.torch import load_file

    state = load_file(str(directory / "model.safetensors"))
    generator = torch.Generator().manual_seed(7)
    for name, value in state.items():
        if value.ndim == 2 and not name.startswith("head_layer"):
            state[name] = (0.3 * torch.randn(value.shape, generator=generator)).contiguous()
    save_file(state, str(directory / "model.safetensors"))


@pytest.fixture(scope="session")
def tiny_pairrm(tiny_pairrm_hf_dir: Path):  # -> PairRM
    from ensemble.rankers.pairrm import load_pairrm

    torch.set_num_threads(1)
    return load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", dtype="auto")


# ----------------------------------------------------------------------------- reward models


@pytest.fixture(scope="session")
def tiny_deberta_rm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """A DeBERTa-v2 sequence-classification reward model (1 label), no chat template."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    directory = tiny_checkpoints["root"] / "deberta-rm"
    directory.mkdir()
    shutil.copy(tiny_checkpoints["hf"] / "spm.model", directory / "spm.model")
    tokenizer = DebertaV2Tokenizer.from_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    config = backbone_config(len(tokenizer))
    config.pop("model_type")
    torch.manual_seed(7)
    model = DebertaV2ForSequenceClassification(DebertaV2Config(**config, num_labels=1))
    model.save_pretrained(str(directory))
    return directory


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
)


@pytest.fixture(scope="session")
def tiny_qwen_rm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """A Qwen2 sequence-classification reward model whose tokenizer has a chat template."""
    import transformers.models.deberta_v2.modeling_deberta_v2 as corpus_module
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForSequenceClassification

    directory = tiny_checkpoints["root"] / "qwen-rm"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(Path(corpus_module.__file__).read_text().splitlines(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(11)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    Qwen2ForSequenceClassification(config).save_pretrained(str(directory))
    return directory
