"""The resolve step that ``serve`` and ``check-config`` share: whatever a config names that must
exist on this host, checked without loading any weights.

- OpenAI backends, remote rankers and fusers: the environment variable named by
  ``api_key_env`` is set.
- llama.cpp backends: the GGUF file exists (a path, or the single/named ``.gguf`` inside the
  installed package of ``package:NAME``); for a chunked model, every chunk package is installed
  and holds one chunk (assembling the file is left to ``serve``).
- transformers backends, PairRM, reward models, GenFuser and the consensus ranker: a ``package:``
  model's package is installed; a checkpoint is a local directory or an id already in the
  Hugging Face cache. An id that is not cached is fatal only when the hub is off
  (``HF_HUB_OFFLINE``); otherwise ``serve`` downloads it, and it is reported as a warning.

:func:`find_problems` lists every finding; :func:`check_resources` raises the first fatal one
as a :class:`ConfigError` and returns the warnings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ensemble.backends.model_path import (
    PACKAGE_PREFIX,
    chunk_files,
    chunked_model,
    model_source,
    package_dir,
    resolve_gguf,
)
from ensemble.checkpoints import find_local_dir
from ensemble.config import (
    BlendgateConfig,
    ConsensusRankerConfig,
    EnsembleModelConfig,
    FuserConfig,
    GenFuserConfig,
    LLMJudgeRankerConfig,
    LocalBackendConfig,
    OpenAIBackendConfig,
    PairRMRankerConfig,
    RankerConfig,
    RemoteFuserConfig,
    RemoteRankerConfig,
    RewardModelRankerConfig,
)
from ensemble.errors import ConfigError


@dataclass(frozen=True)
class Finding:
    key: str  # dotted key in the config file
    message: str
    fatal: bool = True


def find_problems(
    config: BlendgateConfig, environ: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every finding, in file order; each checkpoint is looked up once."""
    env = os.environ if environ is None else environ
    found: list[Finding] = []
    seen: set[tuple[str, str | None]] = set()
    for key, ref, cache_dir in _references(config, env, found):
        if (ref, cache_dir) not in seen:
            seen.add((ref, cache_dir))
            finding = _checkpoint(ref, cache_dir, key)
            if finding is not None:
                found.append(finding)
    return found


def check_resources(
    config: BlendgateConfig, environ: Mapping[str, str] | None = None, *, path: str | Path | None = None
) -> list[Finding]:
    """Raise the first fatal finding as ``ConfigError``; return the warnings."""
    findings = find_problems(config, environ)
    fatal = [f for f in findings if f.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""
        raise ConfigError(fatal[0].message + more, path=path, key=fatal[0].key)
    return findings


def _references(
    config: BlendgateConfig, env: Mapping[str, str], found: list[Finding]
) -> Iterator[tuple[str, str, str | None]]:
    """Check what needs no hub lookup (into ``found``); yield ``(key, checkpoint, cache_dir)``
    for each checkpoint to look up."""
    for name, backend in config.backends.items():
        key = f"backends.{name}"
        if isinstance(backend, OpenAIBackendConfig):
            _api_key(key, backend.api_key_env, env, found)
        elif isinstance(backend, LocalBackendConfig):
            yield from _local_backend(key, backend, found)
    for index, model in enumerate(config.models):
        if isinstance(model, EnsembleModelConfig):
            yield from _ranker(f"models.{index}.ranker", model.ranker, env, found)
            yield from _fuser(f"models.{index}.fuser", model.fuser, env, found)
    if config.rank_service is not None:
        yield from _ranker("rank_service", config.rank_service, env, found)
    if config.fuse_service is not None:
        yield from _fuser("fuse_service", config.fuse_service, env, found)


def _api_key(key: str, api_key_env: str | None, env: Mapping[str, str], found: list[Finding]
             ) -> None:
    if api_key_env and not env.get(api_key_env):
        found.append(Finding(f"{key}.api_key_env",
                             f"environment variable {api_key_env} (the API key) is not set"))


def _fuser(
    key: str, fuser: FuserConfig, env: Mapping[str, str], found: list[Finding]
) -> Iterator[tuple[str, str, str | None]]:
    if isinstance(fuser, GenFuserConfig):
        yield f"{key}.checkpoint", fuser.checkpoint, fuser.cache_dir
    elif isinstance(fuser, RemoteFuserConfig):
        _api_key(key, fuser.api_key_env, env, found)


def _local_backend(
    key: str, backend: LocalBackendConfig, found: list[Finding]
) -> Iterator[tuple[str, str, str | None]]:
    try:
        chunked = chunked_model(backend.model)
        if chunked is not None:
            chunk_files(chunked)  # every chunk package installed; assembling waits for serve
            return
        assert isinstance(backend.model, str)
        if backend.runtime == "llamacpp":
            resolve_gguf(backend.model, backend.gguf_file)
            return
        source, gguf_file = model_source(backend.model, backend.gguf_file)
    except ConfigError as exc:
        found.append(Finding(f"{key}.{exc.key or 'model'}", exc.message))
        return
    if backend.model.startswith(PACKAGE_PREFIX):
        return  # model_source found the package (and its GGUF)
    local = Path(source).expanduser()
    if gguf_file is not None and local.is_dir() and not (local / gguf_file).is_file():
        found.append(Finding(f"{key}.gguf_file", f"no file {gguf_file!r} in {local}"))
        return
    yield f"{key}.model", source, backend.cache_dir


def _ranker(
    key: str, ranker: RankerConfig, env: Mapping[str, str], found: list[Finding]
) -> Iterator[tuple[str, str, str | None]]:
    if isinstance(ranker, RemoteRankerConfig):
        _api_key(key, ranker.api_key_env, env, found)
    elif isinstance(ranker, LLMJudgeRankerConfig):
        if ranker.fallback is not None:  # the judge's backend is checked with the backends
            yield from _ranker(f"{key}.fallback", ranker.fallback, env, found)
    elif isinstance(ranker, (PairRMRankerConfig, RewardModelRankerConfig)):
        yield f"{key}.checkpoint", ranker.checkpoint, ranker.cache_dir
    elif isinstance(ranker, ConsensusRankerConfig):
        if ranker.model.startswith(PACKAGE_PREFIX):
            try:
                package_dir(ranker.model)
            except ConfigError as exc:
                found.append(Finding(f"{key}.model", exc.message))
        else:
            yield f"{key}.model", ranker.model, None


def _checkpoint(ref: str, cache_dir: str | None, key: str) -> Finding | None:
    if find_local_dir(ref, cache_dir) is not None:
        return None
    where = f"the Hugging Face cache ({cache_dir or 'default location'})"
    if not _is_repo_id(ref):
        return Finding(key, f"directory {ref!r} does not exist")
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return Finding(key, f"{ref!r} is not a local directory and not in {where}, and "
                            "HF_HUB_OFFLINE is set")
    return Finding(key, f"{ref!r} is not in {where}: serve will download it from the hub",
                   fatal=False)


def _is_repo_id(ref: str) -> bool:
    if ref.startswith(("/", ".", "~")):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(ref)
    except HFValidationError:
        return False
    return True
