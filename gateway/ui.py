"""``/ui``: the A/B dashboard and side-by-side playground, a static page and one script.

With API keys configured the page is behind them too: ``GET /ui`` without a key answers 401
with a small sign-in form, whose ``POST /ui/login`` checks the key and keeps it in a cookie
(HttpOnly, SameSite=Strict, so other sites' pages cannot send it). ``require_api_key`` accepts
that cookie as well as the ``Authorization`` header, so the page's own calls to ``/v1`` work.
"""

from __future__ import annotations

import html
from importlib import resources
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from gateway.auth import KEY_COOKIE, presented_key
from gateway.deps import read_body
from gateway.state import state_of

router = APIRouter()

_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blendgate</title>
</head><body style="font-family:system-ui,sans-serif;max-width:30em;margin:3em auto">
<h1>blendgate</h1><p>{message}</p><form method="post" action="/ui/login">
<label>API key <input type="password" name="key" autofocus></label>
<button type="submit">Sign in</button></form></body></html>"""


def _asset(name: str) -> str:
    return (resources.files("gateway") / "ui" / name).read_text(encoding="utf-8")


def _authorised(request: Request) -> bool:
    keys = state_of(request.app).api_keys
    if not keys.keys:
        return True
    key = presented_key(request)
    return key is not None and keys.accepts(key)


def _login(message: str, status: int = 401) -> HTMLResponse:
    return HTMLResponse(_LOGIN.format(message=html.escape(message)), status_code=status)


@router.get("/ui", response_class=HTMLResponse)
async def page(request: Request) -> Response:
    if not _authorised(request):
        return _login("This gateway needs an API key.")
    return HTMLResponse(_asset("index.html"), headers={"Cache-Control": "no-store"})


@router.get("/ui/ui.js")
async def script(request: Request) -> Response:
    if not _authorised(request):
        return Response(status_code=401)
    return Response(_asset("ui.js"), media_type="text/javascript",
                    headers={"Cache-Control": "no-store"})


@router.post("/ui/login")
async def login(request: Request) -> Response:
    body = await read_body(request, 8192, media_type="application/x-www-form-urlencoded")
    form = parse_qs(body.decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    keys = state_of(request.app).api_keys
    if keys.keys and not keys.accepts(key):
        return _login("Incorrect API key.")
    response = RedirectResponse("/ui", status_code=303)
    if keys.keys:
        response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", path="/")
    return response
