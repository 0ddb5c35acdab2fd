"""API keys with budgets, kept hashed in a JSON file (``server.keys_file``).

``blendgate keys create NAME`` makes a key (``bg-`` + 32 random bytes, ``secrets``), prints it
once, and stores only its SHA-256 with the key's name and limits; ``list`` and ``revoke``
read and change the file. The key is random, so a plain SHA-256 is enough to keep it safe at
rest: there is no dictionary to try. A key's *name* is what logs, metrics and the store show;
the key itself is never written anywhere.

The gateway reads the file through :class:`KeyRing`, which re-reads it when it changes
(checked at most once a second), so a revoked key stops working without a restart. Writes
replace the file in one ``os.replace``, so the gateway never reads half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ensemble.errors import ConfigError

logger = logging.getLogger(__name__)
KEY_PREFIX = "bg-"
RECHECK_S = 1.0  # how often KeyRing looks at the file's mtime


class KeyRecord(BaseModel):
    """One key as stored: its name, hash and limits (None: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")  # a metrics label: plain and short
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    created_at: float
    revoked: bool = False


_RECORDS = TypeAdapter(list[KeyRecord])


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(path: Path) -> list[KeyRecord]:
    """The file's records; an absent file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read keys file: {exc.strerror}", path=path) from exc
    try:
        return _RECORDS.validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid keys file: {exc.errors()[0]['msg']}", path=path) from exc


def write_keys(path: Path, records: list[KeyRecord]) -> None:
    """Replace the file atomically, readable by its owner only (it holds hashes, not keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(_RECORDS.dump_json(records, indent=2))
    os.replace(tmp, path)


def create_key(path: Path, name: str, *, requests_per_minute: int | None = None,
               tokens_per_day: int | None = None) -> str:
    """Add a key named ``name`` and return it (the only time it is seen)."""
    records = read_keys(path)
    if any(r.name == name for r in records):
        raise ConfigError(f"a key named {name!r} exists already", path=path)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        record = KeyRecord(name=name, sha256=key_hash(key), created_at=time.time(),
                           requests_per_minute=requests_per_minute,
                           tokens_per_day=tokens_per_day)
    except ValidationError as exc:
        raise ConfigError(f"key {name!r}: {exc.errors()[0]['msg']}", path=path) from exc
    write_keys(path, [*records, record])
    return key


def revoke_key(path: Path, name: str) -> None:
    records = read_keys(path)
    if not any(r.name == name for r in records):
        raise ConfigError(f"no key named {name!r}", path=path)
    write_keys(path, [r.model_copy(update={"revoked": True}) if r.name == name else r
                      for r in records])


class KeyRing:
    """The keys file as the gateway sees it: hash -> record, refreshed when the file changes.

    A bad file at start-up is a ``ConfigError``; a bad edit later keeps the keys read last
    (logged), so it cannot lock every client out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime_ns = _mtime_ns(path)
        self._by_hash = _by_hash(read_keys(path))
        self._checked = time.monotonic()

    def find(self, presented: str) -> KeyRecord | None:
        """The live (not revoked) record of a presented key, if any."""
        if time.monotonic() - self._checked >= RECHECK_S:
            self._refresh()
        record = self._by_hash.get(key_hash(presented))
        return record if record is not None and not record.revoked else None

    def records(self) -> list[KeyRecord]:
        return list(self._by_hash.values())

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        mtime = _mtime_ns(self.path)
        if mtime == self._mtime_ns:
            return
        try:
            self._by_hash = _by_hash(read_keys(self.path))
        except ConfigError as exc:
            logger.error("keeping the keys read before: %s", exc)
        self._mtime_ns = mtime


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _by_hash(records: list[KeyRecord]) -> dict[str, KeyRecord]:
    return {r.sha256: r for r in records}
