"""``n`` > 1 with ``fuser: none``: the top-n distinct candidates, through the openai client.

A fake upstream answers sample i of a call with ``TEXTS[i % 3]``; ranker ``none`` keeps the
members' order, so the distinct candidates, best first, are "Alpha." then "Beta.".
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ensemble.output_policy import distinct_choices
from ensemble.types import Candidate
from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import start_fake_upstreams
from tests.gateway.conftest import running_server

TEXTS = ("Alpha.", "Beta.", "Alpha.")


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with start_fake_upstreams(texts=TEXTS) as up:
        config = parse_config({
            "server": {"api_keys_env": None},
            "backends": {"fake": {"kind": "openai", "base_url": up.ok, "model": "m",
                                  "expose": False}},
            "models": [{"type": "ensemble", "id": "pick", "ranker": {"type": "none"},
                        "fuser": {"type": "none"}, "members": [{"backend": "fake",
                                                                 "samples": 3}]}]})
        with running_server(create_app(config)) as url:
            yield openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)


@pytest.mark.parametrize(("n", "expected"), [
    (1, ["Alpha."]), (2, ["Alpha.", "Beta."]), (3, ["Alpha.", "Beta.", "Alpha."])])
def test_n_choices_are_the_best_distinct_candidates(
    client: openai.OpenAI, n: int, expected: list[str]
) -> None:
    answer = client.chat.completions.create(
        model="pick", n=n, messages=[{"role": "user", "content": "Name a letter."}])
    assert [c.message.content for c in answer.choices] == expected
    assert [c.index for c in answer.choices] == list(range(n))


def test_streamed_n_choices_are_distinct_too(client: openai.OpenAI) -> None:
    texts = ["", ""]
    for chunk in client.chat.completions.create(
            model="pick", n=2, stream=True,
            messages=[{"role": "user", "content": "Name a letter."}]):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ["Alpha.", "Beta."]


def test_distinct_choices_keep_the_best_of_each_text() -> None:
    def candidate(text: str, sample: int) -> Candidate:
        return Candidate("m", sample, text, "stop", 0.0)

    ordered = [candidate("a", 0), candidate("b", 1), candidate("a", 2), candidate("c", 3)]
    assert [(c.text, c.sample) for c in distinct_choices(ordered, 4)] == [
        ("a", 0), ("b", 1), ("c", 3), ("a", 0)]
