"""A client of another blendgate serving a ranker or fuser over HTTP (remote rankers, fusers)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field

from ensemble.config.base import StrictModel


class RemoteServiceConfig(StrictModel):
    """Another blendgate serving a model over HTTP (``blendgate serve --config
    configs/ranker-only.yaml``): its base URL, key and the client's timeouts."""

    url: AnyHttpUrl  # the serving blendgate's base URL, e.g. http://ranker:8000 (no /v1)
    api_key_env: str | None = None  # name of the env var holding that server's API key
    timeout_s: float = Field(30.0, gt=0)  # ranking: whole call; fusing: wait between events
    connect_timeout_s: float = Field(5.0, gt=0)
    # Connection failures (refused, connect timeout) are retried this many times at once by
    # httpx's transport; nothing else is retried (a request may already have run).
    connect_retries: int = Field(2, ge=0, le=10)
    max_connections: int = Field(64, ge=1)

    @property
    def base(self) -> str:
        """``url`` as written, without the trailing slash AnyHttpUrl adds to a bare host."""
        return str(self.url).rstrip("/")
