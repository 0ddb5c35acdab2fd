"""Optional bearer-token check. With no keys configured every request is let in.

The presented key is compared with every configured key by ``hmac.compare_digest``, without
stopping at the first match, so the time taken says nothing about which key came close.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from gateway.errors import APIError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class APIKeys:
    keys: frozenset[bytes]

    @classmethod
    def of(cls, keys: frozenset[str]) -> APIKeys:
        return cls(frozenset(k.encode() for k in keys))

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
    if not keys.keys:
        return
    token = presented_key(request)
    if token is None:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key", headers=_CHALLENGE,
        )
    if not keys.accepts(token):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                       headers=_CHALLENGE)
