"""Optional bearer-token check. With no keys configured every request is let in.

Keys are the plain ``server.api_keys`` (no budget) and the hashed, budgeted keys of
``server.keys_file`` (``gateway.keys``); a budgeted key's record is left on the request for
``gateway.budgets``.

The presented key is compared with every configured key by ``hmac.compare_digest``, without
stopping at the first match, so the time taken says nothing about which key came close.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from gateway.errors import APIError
from gateway.keys import KeyRing

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
STATE_KEY = "api_key"  # request.state key: the KeyRecord of a keys-file key


@dataclass(frozen=True)
class APIKeys:
    keys: frozenset[bytes]
    ring: KeyRing | None = None  # the budgeted keys of ``server.keys_file``

    @classmethod
    def of(cls, keys: frozenset[str], keys_file: str | None = None) -> APIKeys:
        ring = KeyRing(Path(keys_file)) if keys_file else None
        return cls(frozenset(k.encode() for k in keys), ring)

    @property
    def required(self) -> bool:
        return bool(self.keys) or self.ring is not None

    def accepts(self, presented: str) -> bool:
        candidate = presented.encode()
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


KEY_COOKIE = "blendgate_key"  # set by /ui/login, so the /ui page's own calls carry the key


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def presented_key(request: Request) -> str | None:
    """The bearer token, else the /ui page's key cookie (SameSite=Strict: same-site only)."""
    return bearer_token(request) or request.cookies.get(KEY_COOKIE) or None


def check_api_key(keys: APIKeys, request: Request) -> None:
    """401 in OpenAI's shape unless a configured key is presented (no keys: let in)."""
    if not keys.required:
        return
    token = presented_key(request)
    if token is None:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key", headers=_CHALLENGE,
        )
    record = keys.ring.find(token) if keys.ring is not None else None
    if record is not None:
        setattr(request.state, STATE_KEY, record)  # its budget applies (gateway.budgets)
        return
    if not keys.accepts(token):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                       headers=_CHALLENGE)
