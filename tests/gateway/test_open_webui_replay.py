"""Every request a stock Open WebUI 0.12.4 sent, replayed byte for byte against the offline default.

The captures (``../shared/clients/open-webui-0.12.4``, beside the clone; see its README) are
real: chat requests carry Open WebUI's 36 built-in tools and no ``max_tokens``; title, tag and
follow-up tasks go to the same model. Each must answer 200 with text, streamed or not.

The config is gateway/configs/default.yaml with two changes to keep CPU time down: 2 samples instead
of 4, answers of at most 24 tokens (``default_max_tokens`` and ``max_tokens_limit``), and
generous timeouts: on a busy 2-core host a blended task request took up to 90 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.config import parse_config
from tests.gateway.conftest import running_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO.parent / "shared" / "clients" / "open-webui-0.12.4"


def _captures() -> list[Any]:
    if not CAPTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"Open WebUI captures not found at {CAPTURES} (../shared beside the clone)"))]
    return [pytest.param(path, id=path.stem) for path in sorted(CAPTURES.glob("*.json"))]


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    data: dict[str, Any] = yaml.safe_load((REPO / "gateway" / "configs" / "default.yaml").read_text())
    data["models"][0]["members"][0]["samples"] = 2
    data["server"]["max_tokens_limit"] = data["server"]["default_max_tokens"] = 24
    data["server"]["api_keys_env"] = None
    # A shared CI host can be slow: this test is about the requests' shapes, not speed.
    data["models"][0]["member_timeout_s"] = data["models"][0]["deadline_s"] = 600
    with running_server(create_app(parse_config(data)), startup_timeout_s=600) as url:
        yield url


@pytest.mark.parametrize("capture", _captures())
def test_replayed_request_is_answered(gateway_url: str, capture: Path) -> None:
    recorded = json.loads(capture.read_text())
    request = recorded["request"]
    url = gateway_url + request["path"]
    if request["method"] == "GET":
        response = httpx.get(url, timeout=60)
        assert response.status_code == 200
        assert {"blend", "smollm2"} <= {m["id"] for m in response.json()["data"]}
        return
    body = (CAPTURES / request["body_raw_file"]).read_bytes()
    headers = {"Content-Type": "application/json"}
    if not request["body"].get("stream"):
        response = httpx.post(url, content=body, headers=headers, timeout=300)
        assert response.status_code == 200, response.text
        message = response.json()["choices"][0]["message"]
        assert (message["content"] or "").strip()
        return
    with httpx.stream("POST", url, content=body, headers=headers, timeout=300) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("data: ") for line in response.iter_lines()
                  if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks), chunks
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
