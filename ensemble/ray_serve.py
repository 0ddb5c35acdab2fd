"""Rankers and fusers as Ray Serve deployments, and the clients the gateway ranks and fuses with.

Needs the ``ray`` extra (``pip install 'blendgate[ray]'``); nothing else imports this module.

- :class:`RankerModel` wraps any in-process ranker (PairRM, reward model, consensus). Its
  ``rank`` goes through ``@serve.batch``: calls arriving from every gateway replica within
  ``batch_wait_ms`` (up to ``max_batch_size``) are handed to the model together, so the
  ranker's own pool runs all their pairs as one length-sorted batch.
- :class:`FuserModel` wraps a GenFuser (with its LLM fallback, whose backend it builds). Its
  ``fuse`` is a streaming ``@serve.batch``: the fuses of one batch start together, so GenFuser
  generates them in one ``generate`` call, and each step of the batch generator hands every
  request the deltas produced since the last step.
- :class:`RayRanker` / :class:`RayFuser` implement the ``Ranker`` / ``Fuser`` protocols over
  a deployment handle; :func:`ray_builders` gives ``BlendEngine.from_config`` builders that
  return them for configs that have a deployment, and the in-process component otherwise.

A replica that dies under a ranking call (actor died or unavailable) is retried on another
replica (``tenacity``, a few attempts): a ranking has no side effect. A fuse is not retried
once it has streamed. Errors raised in a replica (``RankerError``, ``FuserError``,
``OverloadedError``) reach the gateway with their types, so the HTTP answers match the
in-process ones.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from ensemble.backends.base import Backend
from ensemble.backends.factory import build_backend
from ensemble.config import BackendConfig, FuserConfig, GenFuserConfig, RankerConfig
from ensemble.errors import FuserError, OverloadedError, RankerError
from ensemble.fusers.base import Fuser
from ensemble.fusers.factory import FuserBuilder, build_fuser
from ensemble.rankers.base import Ranker
from ensemble.rankers.factory import RankerBuilder, build_ranker
from ensemble.types import ChatMessage, FuseStream, Ranking, SamplingParams, TextDelta

# Rankers worth a deployment of their own: they hold a model. (none / remote stay in-process.)
MODEL_RANKERS = ("pairrm", "reward_model", "consensus")
MODEL_FUSERS = ("genfuser",)
REPLICA_RETRIES = 3


def config_key(cfg: RankerConfig | FuserConfig) -> str:
    """The identity of a component config: one deployment per distinct config."""
    return cfg.model_dump_json()


# --------------------------------------------------------------------------- deployments


@dataclass
class BatchStats:
    """What a model replica has done: calls, ``@serve.batch`` batches, pooled model calls."""

    pid: int
    calls: int = 0
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    model_batches: int | None = None


class RankerModel:
    """One ranker (its config as JSON) behind ``@serve.batch``; see the module docstring."""

    async def __init__(self, ranker_json: str, max_batch_size: int, batch_wait_ms: float) -> None:
        cfg: RankerConfig = TypeAdapter(RankerConfig).validate_json(ranker_json)
        if "batch_wait_ms" in type(cfg).model_fields:
            # @serve.batch already waited for company: the model's own pool takes the batch
            # as it comes, all at once.
            cfg = cfg.model_copy(update={"batch_wait_ms": 0.0})
        self._ranker = await build_ranker(cfg)
        self._stats = BatchStats(os.getpid())
        self._rank_batch.set_max_batch_size(max_batch_size)
        self._rank_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)

    def name(self) -> str:
        return self._ranker.name

    def has_compare(self) -> bool:
        return hasattr(self._ranker, "compare")

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        self._stats.calls += 1
        result = await self._rank_batch((tuple(messages), tuple(candidates)))
        if isinstance(result, BaseException):
            raise result
        return result

    async def compare(self, messages: Sequence[ChatMessage], a: str, b: str) -> Any:
        compare = getattr(self._ranker, "compare", None)
        if compare is None:
            raise RankerError(f"{self._ranker.name} has no pairwise compare")
        return await compare(messages, a, b)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _rank_batch(
        self, jobs: list[tuple[tuple[ChatMessage, ...], tuple[str, ...]]]
    ) -> list[Ranking | BaseException]:
        self._stats.batches += 1
        self._stats.batch_sizes.append(len(jobs))
        # One failure must not fail the batch's other requests: errors travel as results.
        return list(await asyncio.gather(
            *(self._ranker.rank(messages, candidates) for messages, candidates in jobs),
            return_exceptions=True))

    def stats(self) -> BatchStats:
        self._stats.model_batches = getattr(self._ranker, "batches_run", None)
        return self._stats

    def pid(self) -> int:
        return os.getpid()

    async def __del__(self) -> None:
        await self._ranker.aclose()


@dataclass(frozen=True)
class _FuseJob:
    messages: tuple[ChatMessage, ...]
    candidates: tuple[str, ...]
    params: SamplingParams


@dataclass(frozen=True)
class FuseStep:
    """What one request gets per step of the fuse batch: new deltas, and whether it ended."""

    deltas: tuple[TextDelta, ...] = ()
    end: bool = False
    error: BaseException | None = None


class FuserModel:
    """A GenFuser (and its fallback's backend) behind a streaming ``@serve.batch``."""

    async def __init__(self, fuser_json: str, backends_json: str, max_batch_size: int,
                       batch_wait_ms: float) -> None:
        """``backends_json``: the configs (as built, defaults applied) of the backends the
        fuser calls, by name: a GenFuser's LLM fallback (see :func:`fuser_backends`)."""
        cfg: FuserConfig = TypeAdapter(FuserConfig).validate_json(fuser_json)
        if isinstance(cfg, GenFuserConfig):
            cfg = cfg.model_copy(update={"batch_wait_ms": 0.0})  # @serve.batch waited
        configs = TypeAdapter(dict[str, BackendConfig]).validate_json(backends_json)
        self._backends = {name: build_backend(name, c) for name, c in configs.items()}
        self._fuser = await build_fuser(cfg, self._backends)
        self._stats = BatchStats(os.getpid())
        self._fuse_batch.set_max_batch_size(max_batch_size)
        self._fuse_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)

    def name(self) -> str:
        return self._fuser.name

    async def fuse(
        self, messages: Sequence[ChatMessage], candidates: Sequence[str], params: SamplingParams
    ) -> AsyncIterator[str | FuseStep]:
        """First the name of the fuser producing the text, then :class:`FuseStep` items."""
        self._stats.calls += 1
        async for item in self._fuse_batch(_FuseJob(tuple(messages), tuple(candidates), params)):
            yield item

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _fuse_batch(self, jobs: list[_FuseJob]) -> AsyncIterator[list[Any]]:
        self._stats.batches += 1
        self._stats.batch_sizes.append(len(jobs))
        started = await asyncio.gather(
            *(self._fuser.fuse(j.messages, j.candidates, j.params) for j in jobs),
            return_exceptions=True)
        yield [s.fuser if isinstance(s, FuseStream) else FuseStep(end=True, error=s)
               for s in started]
        async for step in _interleave(started):
            yield step

    def stats(self) -> BatchStats:
        return self._stats

    async def __del__(self) -> None:
        await self._fuser.aclose()
        for backend in self._backends.values():
            await backend.aclose()


async def _interleave(started: Sequence[FuseStream | BaseException]) -> AsyncIterator[list[Any]]:
    """Steps of a streaming batch: per request, the deltas since the last step (``FuseStep``),
    ``StopIteration`` once it has ended (Serve then stops that caller's stream)."""
    queue: asyncio.Queue[tuple[int, TextDelta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: FuseStream) -> None:
        try:
            async for delta in stream.deltas:
                queue.put_nowait((index, delta))
        except Exception as exc:  # noqa: BLE001 - that request's error, sent to it alone
            queue.put_nowait((index, exc))
        else:
            queue.put_nowait((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(started)
             if isinstance(s, FuseStream)]
    ended = {i for i, s in enumerate(started) if not isinstance(s, FuseStream)}
    try:
        while len(ended) < len(started):
            events = [await queue.get()]
            while not queue.empty():
                events.append(queue.get_nowait())
            deltas: dict[int, list[TextDelta]] = {}
            finishing: dict[int, BaseException | None] = {}
            for index, event in events:
                if isinstance(event, TextDelta):
                    deltas.setdefault(index, []).append(event)
                else:
                    finishing[index] = event
            step: list[Any] = []
            for index in range(len(started)):
                if index in ended:
                    step.append(StopIteration)
                elif index in finishing:
                    step.append(FuseStep(tuple(deltas.get(index, ())), True, finishing[index]))
                else:
                    step.append(FuseStep(tuple(deltas.get(index, ()))))
            ended.update(finishing)
            yield step
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def fuser_backends(cfg: FuserConfig, backends: Mapping[str, BackendConfig]
                   ) -> dict[str, BackendConfig]:
    """The backends a :class:`FuserModel` replica builds for ``cfg``: a GenFuser's LLM
    fallback's, no other (its members and the rest run elsewhere)."""
    fallback = cfg.fallback if isinstance(cfg, GenFuserConfig) else None
    return {} if fallback is None else {fallback.backend: backends[fallback.backend]}


# --------------------------------------------------------------------------- clients

_REPLICA_GONE = (ActorDiedError, ActorUnavailableError, RayActorError)


def _retrying() -> AsyncRetrying:
    return AsyncRetrying(retry=retry_if_exception_type(_REPLICA_GONE),
                         stop=stop_after_attempt(REPLICA_RETRIES), wait=wait_fixed(0.2),
                         reraise=True)


class RayRanker:
    """``Ranker`` over a :class:`RankerModel` deployment."""

    def __init__(self, handle: DeploymentHandle, name: str) -> None:
        self.name = name
        self._handle = handle

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        async for attempt in _retrying():
            with attempt:
                ranking: Ranking = await self._handle.rank.remote(list(messages), list(candidates))
        return ranking

    async def aclose(self) -> None:
        return None  # the deployment belongs to the Serve application


class RayPairwiseRanker(RayRanker):
    """A :class:`RayRanker` whose model also compares two answers (PairRM): ``/v1/compare``."""

    async def compare(self, messages: Sequence[ChatMessage], a: str, b: str) -> Any:
        async for attempt in _retrying():
            with attempt:
                result = await self._handle.compare.remote(list(messages), a, b)
        return result


class RayFuser:
    """``Fuser`` over a :class:`FuserModel` deployment (streamed through the handle)."""

    def __init__(self, handle: DeploymentHandle, name: str) -> None:
        self.name = name
        self._handle = handle.options(stream=True)

    async def fuse(
        self, messages: Sequence[ChatMessage], candidates: Sequence[str], params: SamplingParams
    ) -> FuseStream:
        stream: DeploymentResponseGenerator = self._handle.fuse.remote(
            list(messages), list(candidates), params)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            raise FuserError(f"{self.name}: the fuse stream ended before it started") from None
        if isinstance(first, FuseStep):  # it could not start
            stream.cancel()
            raise _fuse_error(self.name, first.error)
        return FuseStream(fuser=str(first), deltas=self._deltas(stream))

    async def _deltas(self, stream: DeploymentResponseGenerator) -> AsyncIterator[TextDelta]:
        try:
            async for step in stream:
                for delta in step.deltas:
                    yield delta
                if step.end:
                    if step.error is not None:
                        raise _fuse_error(self.name, step.error)
                    return
            raise FuserError(f"{self.name}: the fuse stream ended without its last step")
        finally:
            stream.cancel()

    async def aclose(self) -> None:
        return None


def _fuse_error(name: str, error: BaseException | None) -> Exception:
    if isinstance(error, (FuserError, OverloadedError)):
        return error
    return FuserError(f"{name}: {type(error).__name__}: {error}")


def ray_builders(
    rankers: Mapping[str, DeploymentHandle], fusers: Mapping[str, DeploymentHandle]
) -> tuple[RankerBuilder, FuserBuilder]:
    """``BlendEngine.from_config`` builders: a deployment's client where the config has a
    deployment, the in-process component otherwise."""

    async def ranker_builder(cfg: RankerConfig) -> Ranker:
        handle = rankers.get(config_key(cfg))
        if handle is None:
            return await build_ranker(cfg)
        name = await handle.name.remote()
        pairwise = await handle.has_compare.remote()
        return (RayPairwiseRanker if pairwise else RayRanker)(handle, name)

    async def fuser_builder(cfg: FuserConfig, backends: Mapping[str, Backend]) -> Fuser:
        handle = fusers.get(config_key(cfg))
        if handle is None:
            return await build_fuser(cfg, backends)
        return RayFuser(handle, await handle.name.remote())

    return ranker_builder, fuser_builder
