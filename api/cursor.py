"""Opaque pagination cursors: a DynamoDB key, signed, as one URL-safe token.

    token = kid "." base64url(JSON {"k": key, "iat": issued}) "." base64url(HMAC-SHA256(secret, that JSON)[:16])

The signature is what makes a cursor opaque: a client cannot forge or edit
one to start a Query at a key of its choosing, and a damaged one is refused
(InvalidCursor) before DynamoDB sees it. `kid` names the secret that signed
it (the first 8 hex digits of its SHA-256), so after a rotation
(API_CURSOR_SECRET new, API_CURSOR_PREVIOUS_SECRET the old one) cursors
already handed out still page on; a cursor expires `ttl_seconds` after it
was issued. Unset, the secret is random per process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Callable

MAX_TOKEN_CHARS = 2048
# What every token looks like (documented in the OpenAPI parameter).
CURSOR_PATTERN = r"^[0-9a-f]{8}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
_TAG_BYTES = 16
DEFAULT_TTL_SECONDS = 3600


class InvalidCursor(ValueError):
    """The cursor was not issued by this API (tampered, truncated, from
    another secret), has expired, or does not fit the request; the message says which."""


class CursorCodec:
    """Encodes DynamoDB keys (`{"name": {"S": "…"}}` form) as signed tokens and back."""

    def __init__(self, secret: str | bytes | None = None, *, previous: str | bytes | None = None,
                 ttl_seconds: int = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.time) -> None:
        current = _as_bytes(secret) if secret else secrets.token_bytes(32)
        self._kid = _key_id(current)
        self._secrets = {self._kid: current}
        if previous:
            self._secrets.setdefault(_key_id(_as_bytes(previous)), _as_bytes(previous))
        self._ttl = ttl_seconds
        self._clock = clock

    def encode(self, key: dict) -> str:
        payload = json.dumps({"k": key, "iat": int(self._clock())}, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=True).encode()
        return f"{self._kid}.{_b64(payload)}.{_b64(_tag(self._secrets[self._kid], payload))}"

    def decode(self, token: str) -> dict[str, dict[str, str]]:
        """The key in `token`. Raises InvalidCursor unless this codec (one of
        its secrets) made it within its time to live; the key is then a flat
        map of typed string values."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidCursor("cursor is too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidCursor("cursor is malformed")
        kid, body, tag = parts
        secret = self._secrets.get(kid)
        if secret is None:
            raise InvalidCursor("cursor was signed with a key this API no longer holds")
        try:
            payload, signature = _unb64(body), _unb64(tag)
        except ValueError:
            raise InvalidCursor("cursor is malformed") from None
        if not hmac.compare_digest(signature, _tag(secret, payload)):
            raise InvalidCursor("cursor was not issued by this API or has been altered")
        try:
            document = json.loads(payload)
            key, issued = document["k"], document["iat"]
        except (ValueError, TypeError, KeyError):  # signed but unreadable: only a changed format could do it
            raise InvalidCursor("cursor is malformed") from None
        now = self._clock()
        if not isinstance(issued, int) or issued > now + 60:  # a minute of clock skew between tasks
            raise InvalidCursor("cursor is malformed")
        if now - issued > self._ttl:
            raise InvalidCursor(f"cursor has expired (cursors last {self._ttl} s): start from the first page")
        if not isinstance(key, dict) or not all(
            isinstance(value, dict) and len(value) == 1
            and next(iter(value)) in ("S", "N") and isinstance(next(iter(value.values())), str)
            for value in key.values()
        ):
            raise InvalidCursor("cursor is malformed")
        return key


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:8]


def _tag(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
