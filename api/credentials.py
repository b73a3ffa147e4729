"""Who is calling: API keys (stored only as hashes) and what each may do.

    key document   {"keys": [{"name", "client", "sha256", "permissions", "producer_ids", "created"}]}
    parse_keys(text)      -> {sha256: Principal}     pure; raises KeyFileError naming the entry
    new_key()             -> (plaintext, sha256)     the plaintext is shown once, never stored
    KeyRing               the current keys from a file or a Secrets Manager secret, re-read
                          every API_KEYS_RELOAD_SECONDS (a new or revoked key takes effect then)

A key is 32 random bytes, so a plain SHA-256 is its safe storage (there is
nothing to guess); looking one up costs a hash and a dict lookup.

A principal's `client` is the namespace of the event ids it writes: two
clients sending the same (source, line) write two records, and one client
repeating a request writes the same ids again. A key with `producer_ids`
writes the ids `retail-producer` itself gives (a CSV replayed through the
API with `producer --via-api`): give it only to the replay's own job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog

log = structlog.get_logger(__name__)

PERMISSIONS = ("ingest", "read")
KEY_PREFIX = "rsk_"
# A client names a namespace: no "/" (it separates client from source in the
# stored source), nothing unprintable, short enough to leave room for the source.
CLIENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@|+=-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """The key document cannot be used; the message names the entry at fault."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: `name` (the credential, for logs and rate
    limits), `client` (the event id namespace; None for producer ids) and
    what it may do."""

    name: str
    client: str | None
    permissions: frozenset[str]
    kind: str = "key"  # key | token

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def source_for(self, source: str) -> str:
        """The source a request's rows are stored under: the caller's, in its
        client's namespace, so its event ids cannot be another client's."""
        return source if self.client is None else f"{self.client}/{source}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its hash."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_hash(key)


def parse_keys(text: str) -> dict[str, Principal]:
    """The keys of a key document by hash. Pure."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"not JSON: {exc}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyFileError('expected {"keys": [...]}')
    keys: dict[str, Principal] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):
        principal, digest = _entry(index, entry)
        if principal.name in names:
            raise KeyFileError(f"keys[{index}]: the name {principal.name!r} is used twice")
        if digest in keys:
            raise KeyFileError(f"keys[{index}]: the same key as {keys[digest].name!r}")
        names.add(principal.name)
        keys[digest] = principal
    return keys


def _entry(index: int, entry: Any) -> tuple[Principal, str]:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: not an object")
    name, digest = entry.get("name"), entry.get("sha256")
    if not isinstance(name, str) or not CLIENT_PATTERN.match(name):
        raise KeyFileError(f"{where}: name must match {CLIENT_PATTERN.pattern}")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise KeyFileError(f"{where} ({name}): sha256 must be 64 lowercase hex digits")
    permissions = entry.get("permissions")
    if not isinstance(permissions, list) or not permissions or not set(permissions) <= set(PERMISSIONS):
        raise KeyFileError(f"{where} ({name}): permissions must be a non-empty list of {', '.join(PERMISSIONS)}")
    client = entry.get("client", name)
    if not isinstance(client, str) or not CLIENT_PATTERN.match(client):
        raise KeyFileError(f"{where} ({name}): client must match {CLIENT_PATTERN.pattern}")
    producer_ids = entry.get("producer_ids", False)
    if not isinstance(producer_ids, bool):
        raise KeyFileError(f"{where} ({name}): producer_ids must be true or false")
    return Principal(name, None if producer_ids else client, frozenset(permissions)), digest


# --- editing a key document (retail-api-keys) -----------------------------------


def add_key(text: str, name: str, permissions: list[str], *, client: str | None = None,
            producer_ids: bool = False, now: float | None = None) -> tuple[str, str]:
    """The document with a new key named `name`, and the key. Pure but for
    the key's randomness. Raises KeyFileError for a name already used."""
    document = json.loads(text) if text.strip() else {"keys": []}
    key, digest = new_key()
    entry: dict[str, Any] = {"name": name, "client": client or name, "sha256": digest,
                             "permissions": sorted(set(permissions)),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
    if producer_ids:
        entry["producer_ids"] = True
    document.setdefault("keys", []).append(entry)
    updated = json.dumps(document, indent=2) + "\n"
    parse_keys(updated)  # the same checks the API makes when it loads it
    return updated, key


def remove_key(text: str, name: str) -> str:
    """The document without the key named `name`; KeyFileError if there is none."""
    document = json.loads(text)
    kept = [entry for entry in document.get("keys", []) if entry.get("name") != name]
    if len(kept) == len(document.get("keys", [])):
        raise KeyFileError(f"no key named {name!r}")
    document["keys"] = kept
    return json.dumps(document, indent=2) + "\n"


# --- the keys the API uses now --------------------------------------------------


def file_reader(path: str) -> Callable[[], str]:
    def read() -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    return read


def secret_reader(secretsmanager: Any, secret_id: str) -> Callable[[], str]:
    def read() -> str:
        return secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]

    return read


@dataclass
class KeyRing:
    """The keys of one or more documents, each read by a `readers` function,
    re-read when `reload_seconds` have passed since the last read (on the
    request that finds them stale, in a thread of its own so no request
    waits on it). A document that cannot be read or parsed keeps the keys it
    had: a typo in the secret never locks every caller out, and it is logged."""

    readers: dict[str, Callable[[], str]]
    reload_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    background: bool = True  # False: reload inline (tests)
    _keys: dict[str, dict[str, Principal]] = field(default_factory=dict)
    _loaded_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        """Read every document now; raises KeyFileError or OSError if one
        cannot be read at all (at start-up a bad document stops the API)."""
        for origin, read in self.readers.items():
            self._keys[origin] = parse_keys(read())
        self._loaded_at = self.clock()
        log.info("api_keys.loaded", keys=sum(len(k) for k in self._keys.values()), origins=sorted(self.readers))

    def reload(self) -> None:
        for origin, read in self.readers.items():
            try:
                keys = parse_keys(read())
            except Exception as exc:  # any failure keeps the keys in force; the reason is logged
                log.error("api_keys.reload_failed", origin=origin, error=f"{type(exc).__name__}: {exc}")
                continue
            if set(keys) != set(self._keys.get(origin, {})):
                log.info("api_keys.changed", origin=origin, keys=len(keys))
            self._keys[origin] = keys

    def lookup(self, key: str) -> Principal | None:
        self._refresh_if_stale()
        digest = key_hash(key)
        for keys in self._keys.values():
            principal = keys.get(digest)
            if principal is not None:
                return principal
        return None

    def _refresh_if_stale(self) -> None:
        now = self.clock()
        if now - self._loaded_at < self.reload_seconds or not self._lock.acquire(blocking=False):
            return
        self._loaded_at = now

        def run() -> None:
            try:
                self.reload()
            finally:
                self._lock.release()

        if self.background:
            threading.Thread(target=run, name="api-keys-reload", daemon=True).start()
        else:
            run()


def key_origins(settings: Any, secretsmanager: Callable[[], Any]) -> dict[str, Callable[[], str]]:
    """The key documents the settings name: API_KEYS_FILE and/or API_KEYS_SECRET_ID."""
    readers: dict[str, Callable[[], str]] = {}
    if settings.api_keys_file:
        readers[f"file:{os.path.abspath(settings.api_keys_file)}"] = file_reader(settings.api_keys_file)
    if settings.api_keys_secret_id:
        readers[f"secret:{settings.api_keys_secret_id}"] = secret_reader(secretsmanager(), settings.api_keys_secret_id)
    return readers
