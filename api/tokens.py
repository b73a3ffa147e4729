"""OIDC bearer tokens (Cognito or any provider): verified with PyJWT against
the issuer's JWKS, turned into a Principal.

    TokenVerifier(issuer, audience, jwks_url, scope_prefix, client_claim).principal(token)

Checked: the signature (asymmetric algorithms only, key by `kid` from the
JWKS, cached and refetched on an unknown `kid`), `exp`, `iat`/`nbf`, the
issuer, and the audience: the `aud` claim, or for Cognito access tokens
(which carry none) `client_id`. Permissions are the `scope` claim's
`<prefix>ingest` and `<prefix>read`; the client (the event id namespace) is
`oidc:` and the `client_claim` claim, `sub` by default.
"""

from __future__ import annotations

from typing import Any

import jwt

from api.credentials import CLIENT_PATTERN, PERMISSIONS, Principal

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
LEEWAY_SECONDS = 30  # clock skew between the issuer and this task
REQUIRED_CLAIMS = ["exp", "iat", "iss"]


class InvalidToken(ValueError):
    """The token is not one this API accepts; the message says why (safe to show)."""


class TokenVerifier:
    def __init__(self, issuer: str, audience: str | frozenset[str], *, jwks_url: str = "", scope_prefix: str = "",
                 client_claim: str = "sub", jwks: Any = None) -> None:
        self.issuer = issuer
        # One or more (comma-separated): an app client per caller, each its own namespace and rate.
        self.audiences = frozenset(a.strip() for a in audience.split(",") if a.strip()) \
            if isinstance(audience, str) else audience
        self.scope_prefix = scope_prefix
        self.client_claim = client_claim
        # The key set is cached for `lifespan`; single keys are not (cache_keys would keep a key
        # the issuer has rotated out for the life of the process).
        self._jwks = jwks or jwt.PyJWKClient(jwks_url or issuer.rstrip("/") + "/.well-known/jwks.json",
                                             cache_keys=False, lifespan=600, timeout=5)

    def principal(self, token: str) -> Principal:
        """The caller the token names; raises InvalidToken. Blocking (the JWKS
        is fetched when a key is not cached): call it from a worker thread."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            # Only the key's own algorithm: a header naming another (ES256 on an RSA key) is refused.
            allowed = [key.algorithm_name] if key.algorithm_name in ALGORITHMS else []
            claims = jwt.decode(token, key.key, algorithms=allowed, issuer=self.issuer, leeway=LEEWAY_SECONDS,
                                options={"require": REQUIRED_CLAIMS, "verify_aud": False})
        except jwt.PyJWKClientConnectionError:
            raise InvalidToken("the token issuer's keys could not be fetched") from None
        except jwt.PyJWKClientError as exc:
            raise InvalidToken(f"token key: {exc}") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # PyJWT raises TypeError for a key of another kind
            raise InvalidToken(f"token: {exc}") from None
        if not self._for_us(claims):
            raise InvalidToken("token: not issued for this API (aud / client_id)")
        client = claims.get(self.client_claim)
        if not isinstance(client, str) or not CLIENT_PATTERN.match(client):
            raise InvalidToken(f"token: its {self.client_claim} claim cannot name a client")
        scopes = claims.get("scope", "")
        granted = set(scopes.split()) if isinstance(scopes, str) else set()
        permissions = frozenset(p for p in PERMISSIONS if self.scope_prefix + p in granted)
        # "oidc:" keeps token clients apart from key clients (a key's client holds no ":").
        return Principal(f"oidc:{client}", f"oidc:{client}", permissions, kind="token")

    def _for_us(self, claims: dict) -> bool:
        audience, client_id = claims.get("aud"), claims.get("client_id")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if any(isinstance(a, str) and a in self.audiences for a in audiences):
            return True
        return audience is None and isinstance(client_id, str) and client_id in self.audiences
