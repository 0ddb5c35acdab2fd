"""Budgeted API keys: the keys file, the reserve/settle rules, and the gateway enforcing them.

The end-to-end tests run uvicorn + the real engine over fake upstreams, whose usage is fixed
(7 prompt tokens, 9 completion tokens a call), so token sums are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ensemble.config import StoreConfig
from ensemble.errors import ConfigError
from ensemble.experiments.store import ExperimentStore
from ensemble.types import BlendRequest, ChatMessage, Usage
from gateway.app import create_app
from gateway.budgets import DAY_S, Budgets, estimate_tokens
from gateway.config import parse_config
from gateway.errors import APIError
from gateway.keys import KeyRecord, KeyRing, create_key, key_hash, read_keys, revoke_key
from gateway.metrics import GatewayMetrics
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import running_server

MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
CALL_TOKENS = 7 + 9  # one fake upstream call
BLEND_TOKENS = 3 * CALL_TOKENS  # two members and the llm fuser


class Clock:
    def __init__(self, now: float = 10 * DAY_S + 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(name: str = "k", **limits: Any) -> KeyRecord:
    return KeyRecord(name=name, sha256=key_hash(name), created_at=0.0, **limits)


def budgets(clock: Clock) -> Budgets:
    return Budgets(GatewayMetrics([]), clock=clock)


# --------------------------------------------------------------------------- rules


def test_requests_per_minute_slide_and_say_when_to_retry() -> None:
    clock = Clock()
    limits = budgets(clock)
    key = record(requests_per_minute=2)
    for _ in range(2):
        limits.settle(limits.reserve(key, 10), Usage(4, 6))
        clock.now += 20
    with pytest.raises(APIError) as refused:
        limits.reserve(key, 10)
    assert refused.value.status == 429 and refused.value.info.code == "rate_limit_exceeded"
    assert refused.value.headers["Retry-After"] == "20"  # the first request leaves at +60 s
    clock.now += 20
    limits.reserve(key, 10)


def test_reservations_in_flight_hold_the_budget_and_settle_to_the_real_use() -> None:
    clock = Clock()
    limits = budgets(clock)
    key = record(tokens_per_day=100)
    first = limits.reserve(key, 60)
    with pytest.raises(APIError) as held:
        limits.reserve(key, 60)  # 60 + 60 > 100 while the first is in flight
    assert held.value.headers["Retry-After"] == "1"
    limits.settle(first, Usage(10, 20))
    second = limits.reserve(key, 60)  # 30 + 60 fits
    limits.settle(second, Usage(10, 40))
    assert limits.spent("k") == 80
    alone = limits.reserve(key, 60)  # does not fit, but nothing else is in flight
    limits.settle(alone, Usage(10, 30))
    with pytest.raises(APIError) as spent:
        limits.reserve(key, 1)
    assert spent.value.info.param == "tokens"
    assert spent.value.headers["Retry-After"] == str(DAY_S - 100)  # the next UTC day
    clock.now += DAY_S
    limits.reserve(key, 1)
    assert limits.spent("k") == 0


def test_estimate_covers_every_call_of_an_ensemble() -> None:
    request = BlendRequest("m", (ChatMessage("user", "héllo"),), n=2)
    assert estimate_tokens(request, candidates=1, max_tokens=100) == 2 * (6 + 8 + 100)
    assert estimate_tokens(request, candidates=3, max_tokens=100) == 2 * 4 * (6 + 8 + 100)


# --------------------------------------------------------------------------- keys file


def test_keys_file_keeps_hashes_only_and_revokes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "alice", tokens_per_day=10)
    assert key.startswith("bg-") and key not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    ring = KeyRing(path)
    found = ring.find(key)
    assert found is not None and found.name == "alice" and found.tokens_per_day == 10
    assert ring.find(key + "x") is None
    with pytest.raises(ConfigError, match="exists already"):
        create_key(path, "alice")
    revoke_key(path, "alice")
    assert read_keys(path)[0].revoked
    assert KeyRing(path).find(key) is None


# --------------------------------------------------------------------------- gateway


def budget_config(up: FakeUpstreams, keys_file: Path, store_dir: Path) -> dict[str, Any]:
    def backend(**extra: Any) -> dict[str, Any]:
        return {"kind": "openai", "base_url": up.ok, "model": "fake", "expose": False,
                **extra}

    return {
        "server": {"api_keys_env": None, "api_keys": ["plain-key"],
                   "keys_file": str(keys_file)},
        "backends": {"a": backend(expose=True), "b": backend(), "fuse": backend()},
        "models": [{"type": "ensemble", "id": "blend", "ranker": {"type": "none"},
                    "fuser": {"type": "llm", "backend": "fuse"},
                    "members": [{"backend": "a"}, {"backend": "b"}]}],
        "store": {"data_dir": str(store_dir), "flush_interval_s": 0.1},
    }


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def gateway_url(fake_upstreams: FakeUpstreams, keys_file: Path,
                store_dir: Path) -> Iterator[str]:
    keys_file.write_text("[]")
    app = create_app(parse_config(budget_config(fake_upstreams, keys_file, store_dir)))
    with running_server(app) as url:
        yield url


def accepted(url: str, key: str) -> bool:
    """Whether the gateway takes ``key``, waiting the second it may take to see a new file."""
    for _ in range(50):
        status = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        if status.status_code == 200:
            return True
        time.sleep(0.05)
    return False


def client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


async def one_round(clients: dict[str, openai.AsyncOpenAI], per_key: int
                    ) -> tuple[dict[str, int], list[openai.RateLimitError]]:
    """``per_key`` concurrent requests from every key: tokens answered per key, and the 429s."""
    async def ask(name: str) -> tuple[str, int | openai.RateLimitError]:
        try:
            answer = await clients[name].chat.completions.create(
                model="blend", messages=MESSAGES, max_tokens=16)  # type: ignore[arg-type]
        except openai.RateLimitError as exc:
            return name, exc
        assert answer.usage is not None
        return name, answer.usage.total_tokens

    results = await asyncio.gather(*(ask(name) for _ in range(per_key) for name in clients))
    tokens = {name: sum(r for n, r in results if n == name and isinstance(r, int))
              for name in clients}
    return tokens, [r for _, r in results if isinstance(r, openai.RateLimitError)]


async def test_two_keys_under_200_concurrent_requests_overspend_at_most_one_request(
    gateway_url: str, keys_file: Path, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limits = {"alice": 1000, "bob": 500}
    keys = {name: create_key(keys_file, name, tokens_per_day=limit)
            for name, limit in limits.items()}
    assert all(accepted(gateway_url, key) for key in keys.values())
    clients = {name: client(gateway_url, key) for name, key in keys.items()}
    spent = dict.fromkeys(limits, 0)
    refusals: list[openai.RateLimitError] = []
    for _ in range(30):  # rounds until every request of a round is refused
        tokens, refused = await one_round(clients, per_key=100)
        for name in limits:
            spent[name] += tokens[name]
        refusals += refused
        if not any(tokens.values()):
            break
    for name, limit in limits.items():
        assert limit <= spent[name] <= limit + BLEND_TOKENS, (name, spent)
        assert spent[name] % BLEND_TOKENS == 0  # every member and the fuser counted
    last = refusals[-1]
    assert last.response.headers["retry-after"].isdigit()
    assert int(last.response.headers["retry-after"]) > 1  # spent: wait for the next day
    body = last.response.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
    async with httpx.AsyncClient() as plain:
        metrics = (await plain.get(f"{gateway_url}/metrics")).text
    for name in limits:
        assert f'blendgate_key_tokens_total{{key="{name}"}} {float(spent[name])}' in metrics
    assert 'blendgate_key_requests_total{key="bob",outcome="limited_tokens"}' in metrics
    for key in keys.values():
        assert key not in caplog.text and key not in metrics
    for c in clients.values():
        await c.close()
    assert await stored_tokens(store_dir, spent) == spent  # and per key in the store


async def stored_tokens(store_dir: Path, expected: dict[str, int]) -> dict[str, int]:
    """Tokens per key name in the gateway's store, polled until they are ``expected`` (the
    writer flushes every 0.1 s) or 10 s have passed."""
    store = await ExperimentStore.open(StoreConfig(data_dir=str(store_dir)))
    try:
        found: dict[str, int] = {}
        for _ in range(200):
            rows = await store.key_usage(since=0)
            found = {key: prompt + completion for key, _, prompt, completion in rows}
            if found == expected:
                break
            await asyncio.sleep(0.05)
        return found
    finally:
        await store.aclose()


def test_rpm_plain_and_revoked_keys(gateway_url: str, keys_file: Path) -> None:
    key = create_key(keys_file, "carol", requests_per_minute=2)
    assert accepted(gateway_url, key)
    sync = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0)
    for _ in range(2):
        sync.chat.completions.create(model="a", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as refused:
        sync.chat.completions.create(model="a", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert 0 < int(refused.value.response.headers["retry-after"]) <= 60
    assert json.loads(refused.value.response.text)["error"]["param"] == "requests"
    plain = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="plain-key", max_retries=0)
    for _ in range(3):  # a server.api_keys key has no budget
        plain.chat.completions.create(model="a", messages=MESSAGES)  # type: ignore[arg-type]
    revoke_key(keys_file, "carol")
    time.sleep(1.1)  # the gateway re-reads the file within a second
    with pytest.raises(openai.AuthenticationError):
        sync.models.list()


def test_keys_cli_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    path = tmp_path / "keys.json"
    assert main(["keys", "--file", str(path), "create", "dave", "--rpm", "3",
                 "--tokens-per-day", "5000"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyRing(path).find(key) is not None
    assert main(["keys", "--file", str(path), "revoke", "dave"]) == 0
    assert main(["keys", "--file", str(path), "list"]) == 0
    listing = capsys.readouterr().out
    assert "dave" in listing and "5000" in listing and "revoked" in listing
    assert key not in listing
    assert main(["keys", "--file", str(path), "revoke", "erin"]) == 2
    assert "no key named 'erin'" in capsys.readouterr().err
