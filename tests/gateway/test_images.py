"""Messages with ``image_url`` parts, through the openai client: unchanged to vision backends,
a clear 400 or dropped (and reported) text-only members, never a 500 or a lost image.

The upstreams are recording fakes: what matters is the body each backend was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import DEFAULT_TEXTS, FakeUpstreams
from tests.gateway.conftest import running_server

PARTS = [{"type": "text", "text": "What is in this picture?"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                             "detail": "low"}}]
WITH_IMAGE = [{"role": "user", "content": PARTS}]
SHOW = {"blend": {"return_candidates": True}}


def images_config(up: FakeUpstreams) -> dict[str, Any]:
    def backend(model: str, **extra: Any) -> dict[str, Any]:
        return {"kind": "openai", "base_url": up.ok, "model": model, "expose": False, **extra}

    def ensemble(model_id: str, members: list[str], **extra: Any) -> dict[str, Any]:
        return {"type": "ensemble", "id": model_id, "ranker": {"type": "none"},
                "members": [{"backend": b} for b in members], **extra}

    return {
        "server": {"api_keys_env": None},
        "backends": {"eyes": backend("eyes-model", vision=True, expose=True),
                     "eyes2": backend("eyes2-model", vision=True),
                     "blind": backend("blind-model", expose=True)},
        "models": [
            {"type": "single", "id": "see", "backend": "eyes"},
            ensemble("mixed-reject", ["eyes", "blind"]),
            ensemble("mixed-drop", ["eyes", "blind"], images="drop_members"),
            ensemble("all-blind", ["blind"], images="drop_members"),
            ensemble("blind-fuser", ["eyes", "eyes2"],
                     fuser={"type": "llm", "backend": "blind"}),
        ],
    }


@pytest.fixture
def client(fake_upstreams: FakeUpstreams) -> Iterator[openai.OpenAI]:
    with running_server(create_app(parse_config(images_config(fake_upstreams)))) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=30)


def sent(up: FakeUpstreams) -> dict[str, list[Any]]:
    """The messages' content each upstream model was sent."""
    out: dict[str, list[Any]] = {}
    for _, body in up.requests:
        out.setdefault(body["model"], []).append(body["messages"][-1]["content"])
    return out


@pytest.mark.parametrize("model", ["see", "eyes"])
@pytest.mark.parametrize("stream", [False, True])
def test_image_parts_reach_a_vision_backend_unchanged(
    client: openai.OpenAI, fake_upstreams: FakeUpstreams, model: str, stream: bool
) -> None:
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=model, messages=WITH_IMAGE, stream=True) if c.choices)  # type: ignore[arg-type]
    else:
        text = client.chat.completions.create(
            model=model, messages=WITH_IMAGE).choices[0].message.content  # type: ignore[arg-type,assignment]
    assert text == DEFAULT_TEXTS[0]
    assert sent(fake_upstreams) == {"eyes-model": [PARTS]}


@pytest.mark.parametrize(("model", "reason"), [
    ("blind", "model `blind` reads text only"),
    ("mixed-reject", "members blind read text only"),
    ("all-blind", "its vision members give 0 samples"),
    ("blind-fuser", "fuser backend blind reads text only"),
])
def test_models_that_cannot_see_answer_400_before_any_call(
    client: openai.OpenAI, fake_upstreams: FakeUpstreams, model: str, reason: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=WITH_IMAGE)  # type: ignore[arg-type]
    assert reason in refused.value.message
    assert refused.value.param == "messages[0].content[1]"  # type: ignore[attr-defined]
    assert fake_upstreams.requests == []


def test_drop_members_asks_only_vision_members_and_reports_the_others(
    client: openai.OpenAI, fake_upstreams: FakeUpstreams
) -> None:
    answer = client.chat.completions.create(
        model="mixed-drop", messages=WITH_IMAGE, extra_body=SHOW)  # type: ignore[arg-type]
    blend = (answer.model_extra or {})["blend"]
    assert [c["member"] for c in blend["candidates"]] == ["eyes"]
    (failure,) = blend["failures"]
    assert failure["member"] == "blind" and "reads text only" in failure["error"]
    assert sent(fake_upstreams) == {"eyes-model": [PARTS]}  # the blind member was never called


def test_text_requests_still_reach_every_member(client: openai.OpenAI,
                                                fake_upstreams: FakeUpstreams) -> None:
    client.chat.completions.create(model="mixed-reject", messages=[
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    assert sent(fake_upstreams) == {"eyes-model": ["Hi"], "blind-model": ["Hi"]}


def test_image_part_without_url_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="see", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"detail": "low"}}]}])  # type: ignore[list-item]
    assert refused.value.param == "messages[0].content[0].image_url"  # type: ignore[attr-defined]
