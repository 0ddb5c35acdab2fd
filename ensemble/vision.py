"""Images in chat requests: which backends read them, and which served models accept them.

A message with ``image_url`` parts keeps them, as the client sent them, in
``ChatMessage.parts`` (its ``content`` is the text of its text parts). Only an OpenAI backend
declared ``vision: true`` is sent those parts; every other backend refuses such a request at
once (``refuse_images``: a 400-class ``BackendStatusError``, never a silent drop), which an
ensemble records as that member's failure: that is how ``images: drop_members`` drops the
text-only members (reported in ``blend.failures``).

``image_refusals(config)`` says, per served model, why it cannot take images (None: it can),
so the gateway answers 400 before any fan-out: a text-only single model; an ensemble with
``images: reject`` and a text-only member, or with no vision member at all (or too few
samples for ``min_candidates``); an ``llm`` fuser or an LLM judge on a text-only backend (they
read the conversation). Rankers and GenFuser read the conversation's text and the
candidates, which the vision members wrote having seen the images.
"""

from __future__ import annotations

from collections.abc import Sequence

from ensemble.config import (
    BackendConfig,
    BlendgateConfig,
    EnsembleModelConfig,
    GenFuserConfig,
    LLMFuserConfig,
    OpenAIBackendConfig,
    SingleModelConfig,
    ranker_backends,
)
from ensemble.errors import BackendStatusError
from ensemble.types import ChatMessage


def has_images(messages: Sequence[ChatMessage]) -> bool:
    return any(part.get("type") == "image_url" for m in messages for part in m.parts)


def reads_images(cfg: BackendConfig) -> bool:
    return isinstance(cfg, OpenAIBackendConfig) and cfg.vision


def refuse_images(backend: str, messages: Sequence[ChatMessage]) -> None:
    """Raise (status 400) when ``messages`` hold images: ``backend`` reads text only."""
    if has_images(messages):
        raise BackendStatusError(
            f"backend {backend} reads text only (not declared vision: true); the request has "
            "images", backend=backend, status=400, detail="the request has images")


def image_refusals(config: BlendgateConfig) -> dict[str, str | None]:
    """Each served model id: why it cannot take a request with images, or None if it can."""
    backends = config.backends
    refusals: dict[str, str | None] = {
        name: None if reads_images(cfg) else f"model `{name}` reads text only"
        for name, cfg in backends.items() if cfg.expose}
    for model in config.models:
        if isinstance(model, SingleModelConfig):
            chain = [model.backend, *model.fallbacks]
            blind = [name for name in chain if not reads_images(backends[name])]
            refusals[model.id] = (f"model `{model.id}` reads text only (backend "
                                  f"{', '.join(blind)})") if blind else None
        else:
            refusals[model.id] = _ensemble_refusal(model, config)
    return refusals


def _ensemble_refusal(model: EnsembleModelConfig, config: BlendgateConfig) -> str | None:
    backends = config.backends
    blind = [m.backend for m in model.members if not reads_images(backends[m.backend])]
    readers = sum(m.samples for m in model.members if reads_images(backends[m.backend]))
    readers_of_context = ranker_backends(model.ranker)
    fuser = model.fuser
    llm = fuser if isinstance(fuser, LLMFuserConfig) else (
        fuser.fallback if isinstance(fuser, GenFuserConfig) else None)
    if llm is not None:
        readers_of_context.append(llm.backend)
    blind_context = [n for n in readers_of_context if not reads_images(backends[n])]
    prefix = f"model `{model.id}` cannot take images:"
    if blind_context:
        return f"{prefix} its judge or fuser backend {', '.join(blind_context)} reads text only"
    if model.images == "reject" and blind:
        return (f"{prefix} members {', '.join(blind)} read text only (images: reject; "
                "images: drop_members would ask only the others)")
    if readers < model.min_candidates:
        return (f"{prefix} its vision members give {readers} samples, fewer than "
                f"min_candidates={model.min_candidates}")
    return None
