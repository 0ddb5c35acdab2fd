"""The one place model files are found (PairRM, GenFuser, reward models, ``Blender``), and the
tokenizer loaded exactly as saved.

Where a checkpoint (hub id or directory) is looked up, first match wins:

1. ``checkpoint`` is an existing directory;
2. ``<root>/<checkpoint>`` holds a ``config.json``, where root is ``cache_dir`` or, without one,
   the hub cache directory (LLM-Blender 0.0.2's plain download layout);
3. the Hugging Face cache (``cache_dir`` or the default hub cache, layout
   ``models--org--name/snapshots/<rev>/``), read with ``local_files_only``;
4. a download (:func:`resolve_dir`: a snapshot; :func:`resolve_file`: that one file), never
   tried when ``HF_HUB_OFFLINE`` is set. :func:`find_local_dir` stops at 3.

:func:`load_tokenizer_file` loads ``tokenizer.json`` verbatim. transformers 5's model-specific
tokenizer classes (``T5Tokenizer``, ``DebertaV2Tokenizer``...) rebuild the normalizer,
pre-tokenizer and decoder from their class defaults and ignore the file's, so a checkpoint whose
pipeline differs from those defaults (e.g. ``Metaspace`` with ``prepend_scheme: never``) would get
different ids from the first token. The generic ``TokenizersBackend`` keeps the file's pipeline,
its added tokens, and the special tokens named in ``tokenizer_config.json`` /
``special_tokens_map.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"


def public_name(checkpoint: str) -> str:
    """The checkpoint as clients may see it (``/v1/rank``'s ``model``): a hub id as is, a
    local path by its last component only, so the server's directory layout is not revealed."""
    path = Path(checkpoint).expanduser()
    if path.is_absolute() or checkpoint.startswith((".", "~")) or path.exists():
        return path.name or checkpoint
    return checkpoint


def find_local_dir(checkpoint: str, cache_dir: str | None = None) -> Path | None:
    """The checkpoint's directory when it is on this host (steps 1-3 above), else None."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        return local
    return _plain_download_dir(checkpoint, cache_dir) or _cached_snapshot(checkpoint, cache_dir)


def resolve_dir(checkpoint: str, cache_dir: str | None = None, *, key: str = "checkpoint") -> Path:
    """The checkpoint's local directory, downloading a snapshot when it is not on this host.

    ``ConfigError`` (naming ``key``) when it is neither local, cached nor downloadable.
    """
    found = find_local_dir(checkpoint, cache_dir)
    if found is not None:
        return found
    from huggingface_hub import snapshot_download

    return Path(_download(lambda: snapshot_download(checkpoint, cache_dir=cache_dir),
                          checkpoint, cache_dir, key))


def resolve_file(
    checkpoint: str, filename: str, cache_dir: str | None = None, *, key: str = "checkpoint"
) -> Path:
    """One file of a checkpoint (e.g. a backbone's ``config.json``), downloaded alone if needed."""
    found = find_local_dir(checkpoint, cache_dir)
    if found is not None and (found / filename).is_file():
        return found / filename
    from huggingface_hub import hf_hub_download

    return Path(_download(lambda: hf_hub_download(checkpoint, filename, cache_dir=cache_dir),
                          f"{checkpoint}/{filename}", cache_dir, key))


def _plain_download_dir(checkpoint: str, cache_dir: str | None) -> Path | None:
    """Step 2: ``<cache_dir or hub cache>/<checkpoint>``, where llm-blender 0.0.2 downloaded."""
    from huggingface_hub import constants

    root = Path(cache_dir).expanduser() if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    candidate = root / checkpoint
    return candidate if (candidate / "config.json").is_file() else None


def _cached_snapshot(checkpoint: str, cache_dir: str | None) -> Path | None:
    """Step 3: the snapshot in the Hugging Face cache, without network."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(checkpoint, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not cached, or not a repo id at all
        logger.debug("%s not in the Hugging Face cache (%s)", checkpoint, exc)
        return None


def _download(fetch: Callable[[], str], what: str, cache_dir: str | None, key: str) -> str:
    """Step 4, or a ``ConfigError`` saying why the files are not here."""
    from huggingface_hub import constants

    where = f"not a local directory, not in the Hugging Face cache ({cache_dir or 'default cache'})"
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"cannot find {what!r}: {where}, and HF_HUB_OFFLINE is set", key=key)
    try:
        return fetch()
    except Exception as exc:
        raise ConfigError(
            f"cannot find {what!r}: {where}, and the hub download failed "
            f"({type(exc).__name__}: {exc})",
            key=key,
        ) from exc


def has_tokenizer_file(directory: Path) -> bool:
    return (directory / TOKENIZER_FILE).is_file()


def load_tokenizer_file(directory: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's ``tokenizer.json`` verbatim, with its special tokens (see module doc)."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend  # torch-free config

    if not has_tokenizer_file(directory):
        raise ConfigError(f"{directory}: no {TOKENIZER_FILE}", key="checkpoint")
    return TokenizersBackend.from_pretrained(str(directory))
