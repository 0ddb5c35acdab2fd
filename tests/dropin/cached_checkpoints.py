"""A temporary Hugging Face home holding, under the hub ids the seed snippets name, tiny random
checkpoints in each repo's real file layout (``HF_HOME/hub/models--org--name/snapshots/<rev>/``):

- ``llm-blender/PairRM``: the original layout (ranker ``config.json``/``ranker_config.json``,
  ``model.safetensors``, ``spm.model``, ``tokenizer.json``, ``added_tokens.json``...), whose
  ``model_name`` is ``microsoft/deberta-v3-large`` as in the real file;
- ``microsoft/deberta-v3-large``: that backbone's ``config.json`` (the loader reads only it);
- ``llm-blender/PairRM-hf``: the transformers layout (``DebertaV2PairRM`` config), same weights;
- ``llm-blender/gen_fuser_3b``: a tiny T5 in GenFuser's layout (tests/genfuser/tiny_t5.py);
- ``HuggingFaceH4/zephyr-7b-beta``: a tiny Llama with a chat template (the README's best-of-n
  generator); its ``generation_config.json`` holds ``max_new_tokens: 8`` so random weights
  stop quickly.

The PairRM weights are the lively ones (tests/pairrm/conftest.py ``enliven``): at the default
init all candidates score within ~1e-4, and ranks would be float noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.fixtures.hub_cache import place_in_hub_cache

PAIRRM, PAIRRM_HF, BACKBONE = "llm-blender/PairRM", "llm-blender/PairRM-hf", "microsoft/deberta-v3-large"
FUSER, ZEPHYR = "llm-blender/gen_fuser_3b", "HuggingFaceH4/zephyr-7b-beta"
ZEPHYR_NEW_TOKENS = 8


def _pairrm_dirs(work: Path) -> dict[str, Path]:
    """The tiny PairRM in both layouts, lively weights, backbone named by its hub id."""
    from tests.pairrm.conftest import build_tiny_checkpoints, enliven

    dirs = build_tiny_checkpoints(work)
    for layout in ("hf", "original"):
        enliven(dirs[layout])
    for name in ("config.json", "ranker_config.json"):
        path = dirs["original"] / name
        config = json.loads(path.read_text(encoding="utf-8"))
        config["model_name"] = BACKBONE
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return dirs


def _zephyr_dir(work: Path) -> Path:
    from tests.fixtures.tiny_llama import save_tiny_llama

    directory = save_tiny_llama(work / "zephyr")
    path = directory / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["max_new_tokens"] = ZEPHYR_NEW_TOKENS
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def build_hf_home(root: Path) -> dict[str, Path]:
    """Fill ``root/hub`` (``HF_HOME=root``); returns each hub id's local source directory."""
    from tests.genfuser.tiny_t5 import build_tiny_checkpoint

    work = root / "sources"
    work.mkdir(parents=True)
    pairrm = _pairrm_dirs(work)
    sources = {
        PAIRRM: pairrm["original"], PAIRRM_HF: pairrm["hf"], BACKBONE: pairrm["backbone"],
        FUSER: build_tiny_checkpoint(work / "gen_fuser_3b"), ZEPHYR: _zephyr_dir(work),
    }
    for repo_id, source in sources.items():
        place_in_hub_cache(root / "hub", repo_id, source)
    shutil.rmtree(pairrm["root"] / "hf-cache", ignore_errors=True)
    return sources
