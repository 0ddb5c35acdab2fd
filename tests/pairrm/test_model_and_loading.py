"""Loading both layouts, the state-dict contract, batching equivalence, and sign conventions."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.errors import ConfigError
from ensemble.rankers.pairrm import PairRM, load_pairrm, pair_logits
from ensemble.rankers.pairrm.checkpoint import read_layout

SRC = "Explain what a relative position embedding is."
A = "It encodes the distance between tokens instead of their absolute index."
B = "No idea, sorry."
C = "Position is relative: attention scores depend on i - j."


def test_state_dict_keys_match_the_checkpoint_contract(tiny_pairrm: PairRM, tiny_pairrm_hf_dir: Path):
    keys = set(tiny_pairrm.model.state_dict())
    assert keys == set(load_file(str(tiny_pairrm_hf_dir / "model.safetensors")))
    assert {"head_layer.1.weight", "head_layer.1.bias", "head_layer.4.weight", "head_layer.4.bias"} <= keys
    assert all(k.startswith(("pretrained_model.", "head_layer.")) for k in keys)
    assert not any("position_ids" in k for k in keys)
    h = tiny_pairrm.model.config.hidden_size
    assert tiny_pairrm.model.head_layer[1].weight.shape == (h, 2 * h)
    assert tiny_pairrm.model.head_layer[4].weight.shape == (1, h)
    rows = tiny_pairrm.model.pretrained_model.embeddings.word_embeddings.weight.shape[0]
    assert rows == len(tiny_pairrm.tokenizer)


def test_prefix_ids_are_the_four_after_mask(tiny_pairrm: PairRM):
    mask = tiny_pairrm.tokenizer.mask_token_id
    p = tiny_pairrm.prefix_ids
    assert (p.source, p.candidate1, p.candidate2, p.candidate) == (mask + 1, mask + 2, mask + 3, mask + 4)
    assert tiny_pairrm.tokenizer.pad_token_id == 0
    assert (tiny_pairrm.tokenizer.cls_token_id, tiny_pairrm.tokenizer.sep_token_id) == (1, 2)


def test_both_layouts_and_the_cache_give_identical_logits(
    tiny_pairrm: PairRM, tiny_pairrm_original_dir: Path, tiny_hf_cache: tuple[Path, str]
):
    original = load_pairrm(str(tiny_pairrm_original_dir), device="cpu")
    cache_dir, repo_id = tiny_hf_cache
    cached = load_pairrm(repo_id, device="cpu", cache_dir=str(cache_dir))
    triples = [(SRC, A, B), (SRC, B, A), (SRC, C, A)]
    ref = pair_logits(tiny_pairrm, triples)
    np.testing.assert_array_equal(pair_logits(original, triples), ref)
    np.testing.assert_array_equal(pair_logits(cached, triples), ref)
    assert read_layout(tiny_pairrm_original_dir).kind == "original"
    # the original layout's vocab comes from the tokenizer, not the backbone's larger config
    assert original.model.config.vocab_size == len(original.tokenizer)


def test_original_config_is_never_read_as_a_transformers_config(tiny_pairrm_original_dir: Path):
    layout = read_layout(tiny_pairrm_original_dir)
    assert layout.backbone is None and layout.backbone_name
    assert (layout.source_max_length, layout.candidate_max_length) == (1224, 412)


def test_batched_equals_one_at_a_time(tiny_pairrm: PairRM):
    triples = [(SRC, A, B), (SRC, B, C), ("short", "x", "a much longer candidate " * 5),
               (SRC + " more words here", C, A), ("short", "a much longer candidate " * 5, "x")]
    batched = pair_logits(tiny_pairrm, triples, max_batch_pairs=8)
    single = np.array([pair_logits(tiny_pairrm, [t], max_batch_pairs=1)[0] for t in triples])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    assert batched.dtype == np.float32
    # a tight token budget splits the pool differently and changes nothing
    tight = dataclasses.replace(tiny_pairrm, max_batch_tokens=64)
    np.testing.assert_allclose(pair_logits(tight, triples), single, atol=1e-5, rtol=0)


def test_logit_is_left_minus_right_through_the_head(tiny_pairrm: PairRM):
    """Orientation: the logit is head([src;left]) - head([src;right]) (> 0 = LEFT better)."""
    model = tiny_pairrm.model
    captured: list[torch.Tensor] = []
    handle = model.head_layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logit = pair_logits(tiny_pairrm, [(SRC, A, B)])[0]
    finally:
        handle.remove()
    left, right = captured  # head is called for the left candidate first
    assert logit == pytest.approx(float(left[0, 0] - right[0, 0]), abs=1e-6)
    assert logit != 0.0


def test_unknown_checkpoint_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="cannot find 'nobody/no-such-model'"):
        load_pairrm("nobody/no-such-model", device="cpu", cache_dir=str(tmp_path))


def test_wrong_prompt_token_ids_fail_loudly(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pairrm_hf_dir, broken)
    table = json.loads((broken / "added_tokens.json").read_text())
    table["<|source|>"], table["<|candidate|>"] = table["<|candidate|>"], table["<|source|>"]
    (broken / "added_tokens.json").write_text(json.dumps(table))
    with pytest.raises(ConfigError, match="prompt-token ids"):
        load_pairrm(str(broken), device="cpu")


def test_config_prefix_ids_must_match(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pairrm_hf_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["source_prefix_id"] = 128001
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="prefix ids"):
        load_pairrm(str(broken), device="cpu")


def test_pytorch_bin_loads_non_strictly_with_a_warning(
    tiny_pairrm: PairRM, tiny_pairrm_original_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_pairrm_original_dir, legacy)
    state = load_file(str(legacy / "model.safetensors"))
    state["pretrained_model.embeddings.position_ids"] = torch.arange(512)[None]  # old extra key
    torch.save(state, legacy / "pytorch_model.bin")
    (legacy / "model.safetensors").unlink()
    with caplog.at_level("WARNING"):
        model = load_pairrm(str(legacy), device="cpu")
    assert "unexpected keys" in caplog.text and "position_ids" in caplog.text
    np.testing.assert_array_equal(pair_logits(model, [(SRC, A, B)]), pair_logits(tiny_pairrm, [(SRC, A, B)]))


def test_safetensors_is_strict(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pairrm_hf_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    del state["head_layer.4.bias"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ConfigError, match="head_layer.4.bias"):
        load_pairrm(str(broken), device="cpu")


def test_tokenizer_json_is_used_verbatim(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    """A change in tokenizer.json's pipeline must show up in the ids (no class defaults)."""
    from ensemble.rankers.pairrm.checkpoint import load_tokenizer

    edited = tmp_path / "edited"
    shutil.copytree(tiny_pairrm_hf_dir, edited)
    spec = json.loads((edited / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Lowercase"}
    (edited / "tokenizer.json").write_text(json.dumps(spec))
    original, _ = load_tokenizer(tiny_pairrm_hf_dir)
    lowered, _ = load_tokenizer(edited)
    assert lowered("Hello World")["input_ids"] == original("hello world")["input_ids"]
    assert original("Hello World")["input_ids"] != original("hello world")["input_ids"]


def test_spm_only_checkpoint_loads(tiny_pairrm: PairRM, tiny_pairrm_hf_dir: Path, tmp_path: Path):
    spm_only = tmp_path / "spm-only"
    shutil.copytree(tiny_pairrm_hf_dir, spm_only)
    (spm_only / "tokenizer.json").unlink()
    model = load_pairrm(str(spm_only), device="cpu")
    np.testing.assert_array_equal(pair_logits(model, [(SRC, A, B)]), pair_logits(tiny_pairrm, [(SRC, A, B)]))


def test_missing_deberta_v3_large_backbone_falls_back_to_its_published_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import huggingface_hub.constants as hub_constants

    from ensemble.rankers.pairrm.checkpoint import load_backbone_config

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with caplog.at_level("WARNING"):
        config = load_backbone_config("microsoft/deberta-v3-large", str(tmp_path))
    assert "published config" in caplog.text
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (1024, 24, 16)
    assert (config.position_buckets, config.max_relative_positions, config.type_vocab_size) == (256, -1, 0)
    assert config.position_biased_input is False and config.model_type == "deberta-v2"
    with pytest.raises(ConfigError, match="backbone 'someone/other-backbone'"):
        load_backbone_config("someone/other-backbone", str(tmp_path))


def test_a_directory_that_is_not_pairrm_fails_loudly(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    other = tmp_path / "other"
    shutil.copytree(tiny_pairrm_hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    for key in ("n_tasks", "source_prefix_id"):
        config.pop(key)
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="without PairRM keys"):
        load_pairrm(str(other), device="cpu")
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="neither a PairRM-hf config nor"):
        load_pairrm(str(other), device="cpu")


def test_package_facade_lists_its_public_names():
    import ensemble.rankers.pairrm as package

    assert package.__all__ == sorted(package.__all__)
    assert all(getattr(package, name, None) is not None for name in package.__all__)


def test_dtype_and_device_rules():
    from ensemble.placement import resolve_dtype

    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cuda")) == torch.float16
    with pytest.raises(ConfigError):
        resolve_dtype("int8", torch.device("cpu"))
