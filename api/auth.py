"""The API's front door: who is calling (401), may they (403), how fast (429).

    X-API-Key: rsk_…  or  Authorization: Bearer rsk_…   an API key (api/credentials.py)
    Authorization: Bearer <JWT>                          an OIDC token (api/tokens.py)

`FrontDoor` is the authentication middleware every route but /healthz goes
through; it puts the Principal on the connection (`connection.user`) and
takes one token of its rate limit. Each route states its permission with a
guard, `requires("ingest")` or `requires("read")`. No credential is ever
logged: a failure logs its reason and, for a key, nothing of the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from api.credentials import KEY_PREFIX, KeyRing, Principal
from api.limits import RateLimiter
from api.metrics import ApiMetrics
from api.tokens import InvalidToken, TokenVerifier

log = structlog.get_logger(__name__)

OPEN = {"exclude_from_auth": True}  # a route's opt: no credential needed (/healthz)
_CHALLENGE = 'Bearer realm="retail-api"'


@dataclass(frozen=True)
class Door:
    """What the front door checks against, made once per app."""

    keys: KeyRing | None
    tokens: TokenVerifier | None
    limiter: RateLimiter
    metrics: ApiMetrics

    async def principal(self, connection: ASGIConnection) -> Principal:
        key, token = presented(connection.headers)
        if key is not None and self.keys is not None:
            principal = self.keys.lookup(key)
            if principal is None:
                raise self._refuse("unknown_key", "the API key is not valid (unknown or revoked)")
            return principal
        if token is not None and self.tokens is not None:
            try:
                return await anyio.to_thread.run_sync(self.tokens.principal, token)
            except InvalidToken as exc:
                raise self._refuse("invalid_token", str(exc), 'error="invalid_token"') from None
        if key is not None or token is not None:
            raise self._refuse("unsupported", "this API does not accept that kind of credential")
        raise self._refuse("missing", "a credential is needed: an X-API-Key header or an Authorization: Bearer token")

    def admit(self, principal: Principal) -> None:
        wait = self.limiter.wait_seconds(principal.name)
        if wait:
            self.metrics.rate_limited.labels(principal.kind).inc()
            raise HTTPException(status_code=429, detail=f"too many requests for {principal.name}; retry in {wait} s",
                                headers={"Retry-After": str(wait)})

    def _refuse(self, reason: str, detail: str, challenge: str = "") -> NotAuthorizedException:
        self.metrics.auth_failures.labels(reason).inc()
        log.info("auth.refused", reason=reason)
        header = f"{_CHALLENGE}, {challenge}" if challenge else _CHALLENGE
        return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": header})


def presented(headers: Any) -> tuple[str | None, str | None]:
    """(api key, bearer token) as the headers carry them. Pure."""
    key = headers.get("x-api-key") or None
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    token = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if key is None and token is not None and token.startswith(KEY_PREFIX):
        return token, None
    return key, token


class FrontDoor(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, door: Door, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.door = door

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        principal = await self.door.principal(connection)
        self.door.admit(principal)
        return AuthenticationResult(user=principal, auth=principal.kind)


def requires(permission: str):
    """A route guard: the caller's credential must grant `permission`."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if not principal.may(permission):
            raise PermissionDeniedException(detail=f"the credential {principal.name} lacks the {permission} permission")

    return guard
