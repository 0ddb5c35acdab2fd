"""Every failure answers in OpenAI's error shape with the right status."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from ensemble.errors import (
    BackendConnectError,
    BackendError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    BlendError,
    ConfigError,
    DeadlineExceeded,
    FuserError,
    FuserRejected,
    FuserTimeout,
    FuserUpstreamError,
    InvalidParamsError,
    MembersRejected,
    MembersTimedOut,
    NoCandidatesError,
    OverloadedError,
    RankerError,
    UnknownModelError,
)
from ensemble.types import MemberFailure
from gateway.app import create_app
from gateway.errors import ERROR_TABLE, from_blend_error, lookup, to_api_error
from tests.gateway.conftest import ENSEMBLE, ScriptedEngine, make_config

MESSAGES = [{"role": "user", "content": "hello"}]
OK_BODY = {"model": ENSEMBLE, "messages": MESSAGES}


class QuorumLost(NoCandidatesError):
    """A subclass the table does not name: it must inherit NoCandidatesError's row."""


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidParamsError("bad", param="x"), 400, "invalid_value"),
        (UnknownModelError("m"), 404, "model_not_found"),
        (BackendConnectError("refused", backend="a"), 502, "upstream_error"),
        (BackendProtocolError("not json", backend="a"), 502, "upstream_error"),
        (BackendStatusError("HTTP 500", backend="a", status=500), 502, "upstream_error"),
        (BackendTimeout("slow", backend="a"), 504, "upstream_timeout"),
        (NoCandidatesError("none"), 502, "all_members_failed"),
        (QuorumLost("none"), 502, "all_members_failed"),
        (DeadlineExceeded("late"), 504, "deadline_exceeded"),
        (MembersTimedOut("slow"), 504, "members_timed_out"),
        (MembersRejected("too long"), 400, "members_rejected"),
        (OverloadedError(retry_after_s=3), 503, "overloaded"),
        (RankerError("oom"), 500, "ranker_failed"),
        (FuserError("oom"), 500, "fuser_failed"),
        (FuserUpstreamError("via a: 500", BackendError("x")), 502, "fuser_upstream_error"),
        (FuserTimeout("via a: slow", BackendTimeout("x")), 504, "fuser_timeout"),
        (FuserRejected("via a: 400", BackendStatusError("x", status=400)), 502,
         "fuser_rejected"),
        (ConfigError("bad"), 500, "config_error"),
        (BlendError("?"), 500, "internal_error"),
    ],
)
def test_table_lookup_along_the_mro(exc: BlendError, status: int, code: str | None) -> None:
    error = from_blend_error(exc)
    assert (error.status, error.info.code) == (status, code)
    assert error.info.type == ("invalid_request_error" if status < 500 else "server_error")
    assert lookup(exc).status == status


def test_every_blend_error_class_has_its_own_row() -> None:
    def subclasses(cls: type[BlendError]) -> list[type[BlendError]]:
        return [cls] + [s for sub in cls.__subclasses__() for s in subclasses(sub)]

    library = [c for c in subclasses(BlendError) if c.__module__ == "ensemble.errors"]
    assert [c.__name__ for c in library if c not in ERROR_TABLE] == []


@pytest.mark.parametrize(
    ("status", "relayed", "code", "retry"),
    [
        (400, 400, "upstream_rejected", "false"),  # e.g. context length exceeded
        (413, 413, "upstream_rejected", "false"),
        (422, 422, "upstream_rejected", "false"),
        (429, 429, "upstream_rate_limited", None),  # may succeed later: the SDK retries it
        (401, 502, "upstream_rejected", "false"),  # the gateway's upstream key: not the client
        (404, 502, "upstream_rejected", "false"),
        (408, 502, "upstream_error", None),
        (503, 502, "upstream_error", None),
    ],
)
def test_upstream_status_is_relayed_truthfully(
    status: int, relayed: int, code: str, retry: str | None
) -> None:
    exc = BackendStatusError(f"upstream HTTP {status}: nope", backend="a", status=status,
                             detail="This model's maximum context length is 8192 tokens.")
    error = from_blend_error(exc)
    assert (error.status, error.info.code, error.headers.get("x-should-retry")) == (
        relayed, code, retry)
    if relayed < 500:
        assert error.info.message == "This model's maximum context length is 8192 tokens."


@pytest.mark.parametrize(("statuses", "relayed"), [((400, 400), 400), ((413, 413), 413),
                                                    ((400, 413), 400), ((401, 401), 400)])
def test_members_rejected_relays_their_status_and_is_not_retried(
    statuses: tuple[int, ...], relayed: int
) -> None:
    error = from_blend_error(MembersRejected("every member rejected it", status=statuses[0]
                                             if len(set(statuses)) == 1 else 400))
    assert (error.status, error.info.code) == (relayed, "members_rejected")
    assert error.headers["x-should-retry"] == "false"


def test_bare_exceptions_are_never_client_errors() -> None:
    for exc in (ValueError("x"), TypeError("x"), KeyError("x"), RuntimeError("x")):
        error = to_api_error(exc)
        assert error.status == 500 and error.info.message == "Internal server error."


@pytest.mark.parametrize(
    ("exc", "status", "fragment"),
    [
        (NoCandidatesError("All members failed", [
            MemberFailure("alpha", "BackendConnectError", "connection refused", 0.1),
            MemberFailure("beta", "BackendStatusError", "HTTP 500", 0.2)]),
         502, "alpha: BackendConnectError: connection refused; beta: BackendStatusError"),
        (DeadlineExceeded("Deadline of 90s passed", [
            MemberFailure("alpha", "BackendTimeout", "no answer in 60s", 60.0)]),
         504, "alpha: BackendTimeout: no answer in 60s"),
        (RankerError("ranker failed: out of memory"), 500, "ranker failed: out of memory"),
    ],
)
async def test_engine_failures_over_http(
    client: httpx.AsyncClient, engine: ScriptedEngine, exc: Exception, status: int, fragment: str
) -> None:
    engine.fail = exc
    response = await client.post("/v1/chat/completions", json=OK_BODY)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]


async def test_overloaded_sets_retry_after(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.fail = OverloadedError("ranker queue full", retry_after_s=3)
    response = await client.post("/v1/chat/completions", json=OK_BODY)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "overloaded"


@pytest.mark.parametrize("bug", [ValueError("no 400 for me"), RuntimeError("secret state")])
async def test_internal_errors_are_generic_500_and_logged(
    client: httpx.AsyncClient, engine: ScriptedEngine, bug: Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine.fail = bug
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        response = await client.post("/v1/chat/completions", json=OK_BODY)
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "Internal server error.",
                                         "type": "server_error", "param": None,
                                         "code": "internal_error"}}
    assert str(bug) in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'"just a string"', 400, None),
        (b'{"model": "blend"}', 400, "messages"),
        (b'{"model": "blend", "messages": []}', 400, "messages"),
        (b'{"model": "blend", "messages": [{"role": "wizard", "content": "x"}]}', 400,
         "messages[0].role"),
        (b'{"model": "blend", "messages": [{"role": "user", "content": "x"}], "top_p": "high"}',
         400, "top_p"),
        (b'{"model": "blend", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "n"),
        ((b'{"model": "blend", "messages": [{"role": "user", "content": [{"type": "image_url", '
          b'"image_url": {"url": "https://x/y.png"}}]}]}'), 400, "messages[0].content[0]"),
        (b'{"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
async def test_bad_requests(client: httpx.AsyncClient, body: bytes, status: int,
                            param: str | None) -> None:
    response = await client.post("/v1/chat/completions", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


async def test_routing_errors_use_the_same_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/engines")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Unknown request URL: GET /v1/engines."
    wrong_method = await client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


async def test_body_over_the_limit_is_413(engine: ScriptedEngine) -> None:
    app = create_app(make_config(max_body_bytes=2048), engine=engine)
    big = {"model": ENSEMBLE, "messages": [{"role": "user", "content": "x" * 4000}]}

    async def chunked() -> object:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 500

    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        declared = await client.post("/v1/chat/completions", json=big)
        streamed = await client.post("/v1/chat/completions", content=chunked(),
                                     headers={"content-type": "application/json"})
        small = await client.post("/v1/chat/completions", json=OK_BODY)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
    assert small.status_code == 200
    assert engine.requests and len(engine.requests) == 1


# --------------------------------------------------------------------------- auth


@pytest.fixture
def keyed_app(engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("BLENDGATE_TEST_KEYS", "sk-env-one, sk-env-two")
    return create_app(make_config(api_keys=["sk-config"], api_keys_env="BLENDGATE_TEST_KEYS"),
                      engine=engine)


async def test_api_keys(keyed_app: FastAPI, engine: ScriptedEngine) -> None:
    async with keyed_app.router.lifespan_context(keyed_app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=keyed_app), base_url="http://gateway"
    ) as client:
        missing = await client.post("/v1/chat/completions", json=OK_BODY)
        wrong = await client.post("/v1/chat/completions", json=OK_BODY,
                                  headers={"Authorization": "Bearer sk-config-but-longer"})
        wrong_before_bad_body = await client.post("/v1/chat/completions", content=b"{",
                                                  headers={"Authorization": "Bearer nope"})
        models = await client.get("/v1/models")
        health = await client.get("/health")
        from_config = await client.post("/v1/chat/completions", json=OK_BODY,
                                        headers={"Authorization": "Bearer sk-config"})
        from_env = await client.get("/v1/models", headers={"Authorization": "Bearer sk-env-two"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    for response in (wrong, wrong_before_bad_body, models):
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert health.status_code == 200
    assert from_config.status_code == 200
    assert from_env.status_code == 200
    assert len(engine.requests) == 1  # rejected requests never reached the engine
