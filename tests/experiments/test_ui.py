"""The /ui page in headless Chromium: load, send a prompt to two models, see both answers and
the ensemble's candidates, vote, see the vote counted; and the page behind the API key."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import parse_config
from tests.experiments.conftest import sqlite_url
from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")


def make_app(tmp_path: Path, **server: Any) -> Any:
    config = parse_config({
        "server": {"api_keys_env": None, **server},
        "backends": {
            "alpha": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"},
            "beta": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b",
                     "expose": False}},
        "models": [{"type": "ensemble", "id": ENSEMBLE,
                    "members": [{"backend": "alpha", "samples": 2}, {"backend": "beta"}]}],
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05},
        "experiments": [{"id": "assistant", "arms": [
            {"name": "ensemble", "model": ENSEMBLE}, {"name": "single", "model": SINGLE}]}],
    })
    return create_app(config, engine=ScriptedEngine(delta_delay_s=0.01))


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_playground_streams_two_answers_and_counts_a_vote(tmp_path: Path, browser: Any) -> None:
    with running_server(make_app(tmp_path)) as url:
        page = browser.new_page()
        page.goto(f"{url}/ui")
        page.wait_for_selector(f"#model-a option[value='{ENSEMBLE}']", state="attached")
        assert page.input_value("#model-a") == ENSEMBLE  # ensemble left, single right
        assert page.input_value("#model-b") == SINGLE
        page.wait_for_selector(".experiment[data-id='assistant']")

        page.fill("#prompt", "Say something")
        page.click("#send")
        page.wait_for_selector("#votes button[data-vote='a']:not([disabled])")
        assert page.inner_text("#answer-a .text") == "blended answer number 0"
        assert page.inner_text("#answer-b .text") == "blended answer number 0"
        # The ensemble's candidates and scores are there, folded; the single model has none.
        assert page.is_visible("#answer-a .candidates")
        assert not page.is_visible("#answer-b .candidates")
        page.click("#answer-a .candidates summary")
        candidates = page.inner_text("#answer-a .candidates")
        assert "alpha #0" in candidates and "0.9000" in candidates

        page.click("#votes button[data-vote='a']")
        page.wait_for_selector("#vote-status:has-text('Vote counted.')")
        page.wait_for_selector(f"#model-feedback tr[data-model='{ENSEMBLE}'] .votes:has-text('1')")
        page.wait_for_selector(f"#model-feedback tr[data-model='{SINGLE}'] .votes:has-text('1')")
        # ... and the vote really is in the store behind the page.
        body = page.evaluate("fetch('/v1/experiments').then(r => r.json())")
        scores = {m["model"]: m["feedback_mean_score"] for m in body["models"]}
        assert scores == {ENSEMBLE: 1.0, SINGLE: 0.0}


def test_page_is_behind_the_api_key(tmp_path: Path, browser: Any) -> None:
    with running_server(make_app(tmp_path, api_keys=["sk-ui"])) as url:
        page = browser.new_page()
        response = page.goto(f"{url}/ui")
        assert response is not None and response.status == 401
        page.fill("input[name='key']", "wrong")
        page.click("button[type='submit']")
        assert "Incorrect API key" in page.content()
        page.fill("input[name='key']", "sk-ui")
        page.click("button[type='submit']")
        page.wait_for_selector(f"#model-a option[value='{ENSEMBLE}']", state="attached")
        page.wait_for_selector(".experiment[data-id='assistant']")  # /v1 calls pass the key
        cookie = next(c for c in page.context.cookies() if c["name"] == "blendgate_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
