"""Schemathesis over the app's own OpenAPI schema: no generated request may crash the server.

The gateway runs for real (uvicorn, the real ``BlendEngine``, fake upstreams that answer at
once). Every operation of ``/openapi.json`` gets ``MAX_EXAMPLES`` generated requests (valid and
invalid bodies); the only property asserted is the one the API promises: no 5xx other than
501 from a service this config does not run, and every error in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import running_server

MAX_EXAMPLES = 10  # per operation: bounded, so `make test` stays quick
# Not fuzzed: the operator's reload, the browser UI and its login, the Prometheus text.
EXCLUDED = r"^/(admin/|ui|metrics)"
NOT_CONFIGURED = {"/v1/rank", "/v1/compare", "/v1/rank/batch", "/v1/fuse"}  # 501 by design


def gateway_config(up: FakeUpstreams | None) -> GatewayConfig:
    url = up.ok if up is not None else "http://127.0.0.1:9/v1"
    return parse_config({
        "server": {"api_keys_env": None, "max_body_bytes": 64_000},
        "backends": {"good": {"kind": "openai", "base_url": url, "model": "fake",
                              "timeout_s": 5, "connect_timeout_s": 1}},
        "models": [{"type": "ensemble", "id": "blend", "ranker": {"type": "none"},
                    "members": [{"backend": "good", "samples": 2}]}],
    })


@pytest.fixture(scope="module")
def gateway_url(_fake_upstreams_server: FakeUpstreams) -> Iterator[str]:
    with running_server(create_app(gateway_config(_fake_upstreams_server))) as url:
        yield url


# The schema comes from the app object (building it starts nothing); the requests go to the
# served one above.
schema = schemathesis.openapi.from_dict(create_app(gateway_config(None)).openapi()).exclude(
    path_regex=EXCLUDED)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_is_a_server_error(case: Any, gateway_url: str) -> None:
    response = case.call(base_url=gateway_url, timeout=30)
    status = response.status_code
    allowed_501 = status == 501 and case.path in NOT_CONFIGURED
    assert status < 500 or allowed_501, (
        f"{case.method} {case.path} -> {status}: {response.text[:500]}")
    if status >= 400 and "json" in response.headers.get("content-type", ""):
        error = response.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error)
