"""Mixture-of-Agents synthesis: an LLM writes one answer from the top-k candidates.

The prompt follows the aggregate-and-synthesize step of Mixture-of-Agents (Wang et al. 2024,
"Mixture-of-Agents Enhances Large Language Model Capabilities"): the candidates go into a
system instruction, the user's conversation follows unchanged, and the model answers the last
user turn.

System message: the synthesis instruction is APPENDED to the user's own leading system (or
developer) message, separated by a blank line, so the result is still one system message.
The user's persona and rules come first and keep priority; many chat templates (SmolLM2's
included) accept only one system message, at the start. Without a leading system message the
instruction becomes the first message.

``LLMFuserConfig.template`` replaces :data:`DEFAULT_TEMPLATE`; it must contain the literal
``{candidates}``, which receives the candidates numbered ``1.``, ``2.``... best first (plain
text replacement, so other braces in a template need no escaping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from ensemble.backends.base import Backend
from ensemble.concurrency import aclose_shielded
from ensemble.config import LLMFuserConfig
from ensemble.errors import BackendError, ConfigError, FuserError, fuser_upstream_error
from ensemble.types import ChatMessage, FuseStream, SamplingParams, TextDelta

PLACEHOLDER = "{candidates}"

DEFAULT_TEMPLATE = (
    "You have been given several candidate responses to the latest user message. Synthesise "
    "them into one single, better response: critically evaluate them, knowing that some of "
    "their content may be wrong or biased; keep what is correct and useful, fix or drop the "
    "rest, and do not simply copy one of them. Answer the user directly, as if the response "
    "were entirely your own: never mention the candidates, their numbers, or this "
    "instruction.\n\nCandidate responses:\n" + PLACEHOLDER
)


class LLMFuser:
    """Fuses through any :class:`Backend`; the synthesis is streamed token by token."""

    name = "llm"

    def __init__(self, backend: Backend, cfg: LLMFuserConfig) -> None:
        template = cfg.template if cfg.template is not None else DEFAULT_TEMPLATE
        if PLACEHOLDER not in template:
            raise ConfigError(f"fuser template must contain {PLACEHOLDER}", key="fuser.template")
        self._backend = backend
        self._template = template
        self._params = dict(cfg.params)

    def prompt(
        self, messages: Sequence[ChatMessage], candidates: Sequence[str]
    ) -> list[ChatMessage]:
        """The conversation sent to the backend (see the module doc for the layout)."""
        numbered = "\n\n".join(f"{i}. {text.strip()}" for i, text in enumerate(candidates, 1))
        instruction = self._template.replace(PLACEHOLDER, numbered)
        if messages and messages[0].role in ("system", "developer"):
            head = messages[0]
            merged = ChatMessage(head.role, f"{head.content}\n\n{instruction}", head.name)
            return [merged, *messages[1:]]
        return [ChatMessage("system", instruction), *messages]

    async def fuse(
        self,
        messages: Sequence[ChatMessage],
        candidates: Sequence[str],
        params: SamplingParams,
    ) -> FuseStream:
        if not candidates:
            raise FuserError("llm fuser: no candidates to synthesise")
        prompt = self.prompt(messages, candidates)
        return FuseStream(fuser=self.name, deltas=self._deltas(prompt, params.merged(self._params)))

    async def _deltas(
        self, prompt: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[TextDelta]:
        stream = self._backend.stream(prompt, params, 1)
        try:
            async for delta in stream:
                yield replace(delta, index=0)  # logprobs too, for an ensemble's answer
        except BackendError as exc:
            raise fuser_upstream_error(f"llm fuser via {self._backend.name}: {exc}", exc) from exc
        finally:
            await aclose_shielded(stream)

    async def aclose(self) -> None:
        return None  # the backend belongs to the engine
