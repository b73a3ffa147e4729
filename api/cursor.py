"""Opaque pagination cursors: a DynamoDB key, signed, as one URL-safe token.

    token = base64url(JSON of the key) "." base64url(HMAC-SHA256(secret, that JSON)[:16])

The signature is what makes a cursor opaque: a client cannot forge or edit
one to start a Query at a key of its choosing, and a damaged one is refused
(InvalidCursor) before DynamoDB sees it. Cursors do not expire; they stay
valid as long as the secret does (API_CURSOR_SECRET; unset, a random secret
per process).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets

MAX_TOKEN_CHARS = 2048
# What every token looks like (documented in the OpenAPI parameter).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
_TAG_BYTES = 16


class InvalidCursor(ValueError):
    """The cursor was not issued by this API (tampered, truncated, from
    another secret) or does not fit the request; the message says which."""


class CursorCodec:
    """Encodes DynamoDB keys (`{"name": {"S": "…"}}` form) as signed tokens and back."""

    def __init__(self, secret: str | bytes | None = None) -> None:
        if not secret:
            secret = secrets.token_bytes(32)
        self._secret = secret.encode() if isinstance(secret, str) else secret

    def encode(self, key: dict) -> str:
        payload = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def decode(self, token: str) -> dict[str, dict[str, str]]:
        """The key in `token`. Raises InvalidCursor unless this codec (its
        secret) made it; the key is then a flat map of typed string values."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidCursor("cursor is too long")
        body, dot, tag = token.partition(".")
        if not dot:
            raise InvalidCursor("cursor is malformed")
        try:
            payload, signature = _unb64(body), _unb64(tag)
        except ValueError:
            raise InvalidCursor("cursor is malformed") from None
        if not hmac.compare_digest(signature, self._tag(payload)):
            raise InvalidCursor("cursor was not issued by this API or has been altered")
        try:
            key = json.loads(payload)
        except ValueError:  # signed but unreadable: only a changed format could do it
            raise InvalidCursor("cursor is malformed") from None
        if not isinstance(key, dict) or not all(
            isinstance(value, dict) and len(value) == 1
            and next(iter(value)) in ("S", "N") and isinstance(next(iter(value.values())), str)
            for value in key.values()
        ):
            raise InvalidCursor("cursor is malformed")
        return key

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
