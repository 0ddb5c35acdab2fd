"""The original LLM-Blender fusion calls, for library users (spec §3.8, §4).

:class:`FusionMixin` gives a class with a ``rank(inputs, candidates, instructions=...,
batch_size=..., return_scores=...)`` method (``ensemble.compat.blender.Blender``) the original
``loadfuser``, ``fuse``, ``rank_and_fuse`` and ``get_topk_candidates_from_ranks``. These are
synchronous, as in the original: generation runs on the calling thread.

Differences from the original, on purpose:
- the caller's candidate lists are left untouched (the original wrote cut candidates back);
- dtype ``"auto"`` is float32 on CPU (the original used bfloat16 on every device);
- ``loadfuser`` rejects settings it does not know (``TypeError``) instead of storing them;
  ``fuse`` before ``loadfuser`` raises ``RuntimeError`` (the original logged and returned None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from ensemble.fusers.genfuser.generate import generate_ids
from ensemble.fusers.genfuser.model import LoadedFuser, load_fuser
from ensemble.fusers.genfuser.prompt import CANDIDATE_MAX_LENGTH, MAX_LENGTH, encode_input
from ensemble.fusers.topk import get_topk_candidates_from_ranks

DEFAULT_FUSER = "llm-blender/gen_fuser_3b"
NUM_BEAMS = 4


@dataclass(frozen=True)
class FuserSettings:
    """What ``loadfuser`` was given (the original ``GenFuserConfig`` fields)."""

    checkpoint: str = DEFAULT_FUSER
    cache_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_length: int = MAX_LENGTH
    candidate_max_length: int = CANDIDATE_MAX_LENGTH


# loadfuser keyword -> FuserSettings field (the original's names are accepted too)
_SETTING_NAMES = {
    "cache_dir": "cache_dir",
    "max_length": "max_length",
    "candidate_maxlength": "candidate_max_length",
    "candidate_max_length": "candidate_max_length",
    "torch_dtype": "dtype",
    "dtype": "dtype",
}


class _Rank(Protocol):
    """The host class's ``rank`` (``Blender.rank``), as ``rank_and_fuse`` calls it."""

    def __call__(self, inputs: Sequence[str], candidates: Sequence[Sequence[str]], *,
                 instructions: Sequence[str] | None, return_scores: bool,
                 batch_size: int) -> Any: ...


def fuse_batch(
    loaded: LoadedFuser,
    settings: FuserSettings,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    batch_size: int = 4,
    **generate_kwargs: Any,
) -> list[str]:
    """The original ``Blender.fuse`` on an already loaded fuser (see :meth:`FusionMixin.fuse`)."""
    if len(inputs) != len(candidates):
        raise ValueError(f"{len(inputs)} inputs but {len(candidates)} candidate lists")
    if instructions is not None and len(instructions) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(instructions)} instructions")
    kwargs = dict(generate_kwargs)
    cut_at = int(kwargs.pop("candidate_max_length", None) or settings.candidate_max_length)
    params: dict[str, Any] = {"max_new_tokens": cut_at, "num_beams": NUM_BEAMS,
                              "num_return_sequences": 1, **kwargs}
    rows = [
        encode_input(loaded.tokenizer, instructions[i] if instructions is not None else "",
                     inputs[i], list(candidates[i]), candidate_max_length=cut_at,
                     max_length=settings.max_length).input_ids
        for i in range(len(inputs))
    ]
    fused: list[str] = []
    for start in range(0, len(rows), batch_size):
        out = generate_ids(loaded, rows[start:start + batch_size], settings.max_length, **params)
        fused.extend(loaded.tokenizer.batch_decode(out, skip_special_tokens=True))
    return fused


class FusionMixin:
    """``loadfuser`` / ``fuse`` / ``rank_and_fuse`` / ``get_topk_candidates_from_ranks``."""

    _fuser: LoadedFuser | None = None
    _fuser_settings: FuserSettings = FuserSettings()

    @property
    def fuser(self) -> LoadedFuser | None:
        """The loaded GenFuser (``model`` and ``tokenizer``); None before ``loadfuser``. The
        original ``Blender`` kept it as ``blender.fuser`` too."""
        return self._fuser

    @property
    def fuser_settings(self) -> FuserSettings:
        """What the last ``loadfuser`` was given (the defaults before one)."""
        return self._fuser_settings

    def loadfuser(self, fuser_name: str = DEFAULT_FUSER, device: str | torch.device | None = None,
                  **kwargs: Any) -> None:
        """Load a GenFuser checkpoint (hub id, local dir, or under ``cache_dir``).

        ``kwargs``: ``cache_dir``, ``max_length``, ``candidate_maxlength`` (or
        ``candidate_max_length``), ``torch_dtype`` (or ``dtype``: ``"auto"``, ``"float32"``,
        ``"float16"``, ``"bfloat16"``). ``device`` (a string or a ``torch.device``) None means
        CUDA when available, else CPU.
        """
        unknown = sorted(set(kwargs) - set(_SETTING_NAMES))
        if unknown:
            raise TypeError(f"loadfuser: unsupported settings {unknown}; "
                            f"known: {sorted(_SETTING_NAMES)}")
        settings = FuserSettings(checkpoint=fuser_name, device=str(device) if device else "auto")
        settings = replace(settings, **{_SETTING_NAMES[k]: v for k, v in kwargs.items()})
        self._fuser = load_fuser(settings.checkpoint, cache_dir=settings.cache_dir,
                                 device=settings.device, dtype=settings.dtype)
        self._fuser_settings = settings

    def fuse(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        batch_size: int = 4,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Fuse each input's candidates (best first) into one text.

        ``candidate_max_length`` in ``generate_kwargs`` (default 128) cuts each candidate and
        is also the default ``max_new_tokens``; the other defaults are 4 beams and one
        sequence; remaining ``generate_kwargs`` go to ``model.generate``.
        """
        if self._fuser is None:
            raise RuntimeError("no fuser loaded; call loadfuser() first")
        return fuse_batch(self._fuser, self._fuser_settings, inputs, candidates,
                          instructions, batch_size, **generate_kwargs)

    def rank_and_fuse(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 4,
        top_k: int = 3,
        **generate_kwargs: Any,
    ) -> tuple[list[str], Any]:
        """Rank, keep the ``top_k`` best (scores are negated into ranks), fuse them.

        Returns ``(fused texts, ranks or scores as returned by rank)``.
        """
        rank: _Rank | None = getattr(self, "rank", None)
        if rank is None:
            raise TypeError(f"{type(self).__name__} has no rank(); rank_and_fuse needs one")
        ranked = rank(inputs, candidates, instructions=instructions,
                           return_scores=return_scores, batch_size=batch_size)
        order_by = -np.asarray(ranked) if return_scores else np.asarray(ranked)
        top = get_topk_candidates_from_ranks(order_by, candidates, top_k)
        fused = self.fuse(inputs, [[str(c) for c in row] for row in top],
                          instructions=instructions, batch_size=batch_size, **generate_kwargs)
        return fused, ranked

    @staticmethod
    def get_topk_candidates_from_ranks(
        ranks: npt.ArrayLike, candidates: Sequence[Sequence[str]], top_k: int | None
    ) -> npt.NDArray[np.str_]:
        return get_topk_candidates_from_ranks(ranks, candidates, top_k)
