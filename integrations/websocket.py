"""OAuth 2.0 bearer tokens on the live websockets.

Browsers sign in with the portal session. Apps and integrators that hold a token send it in the
upgrade request's header, `Authorization: Bearer <token>`, and need the `readings:read` scope. The
socket then gets the token's `Access` (its application's tenant, narrowed to its user's role, as
for the REST API), and the consumers authorize every subscription with it exactly as with a
session's. A header that is present but wrong is never ignored in favour of the session:

- an unknown, expired or revoked token closes the socket with 4401;
- a valid token without `readings:read`, or whose application has no tenant, closes it with 4403.

Enabled by default through `WEBSOCKET_AUTH_MIDDLEWARE`.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthRequest

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from integrations.scopes import READINGS_READ
from integrations.selectors import access_for_token
from portal.access import SCOPE_ACCESS_KEY
from portal.liveprotocol import CloseCode, LiveError

MAX_TOKEN_LENGTH = 512


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer …` header, '' for a malformed one, None without one."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            if kind.lower() != "bearer":
                return None  # another scheme is not ours to judge
            token = token.strip()
            return token if 0 < len(token) <= MAX_TOKEN_LENGTH and " " not in token else ""
    return None


def access_for_bearer(token: str) -> Access:
    """The `Access` of a bearer token with `readings:read`; raises `LiveError` with the close code."""
    if not token:
        raise LiveError(CloseCode.UNAUTHENTICATED, "Malformed Authorization header: expected 'Bearer <token>'.")
    request = OAuthRequest(uri="")
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    if not validator.validate_bearer_token(token, [], request):
        raise LiveError(CloseCode.UNAUTHENTICATED, "The bearer token is unknown, expired or revoked.")
    access_token = request.access_token
    if not access_token.allow_scopes([READINGS_READ]):
        raise LiveError(CloseCode.FORBIDDEN, f"This token lacks the scope {READINGS_READ!r}.")
    try:
        return access_for_token(token=access_token)
    except TenantAccessDenied as exc:
        raise LiveError(CloseCode.FORBIDDEN, str(exc)) from exc


class BearerTokenMiddleware:
    """Puts the token's `Access`, or the `LiveError` that refuses it, in `scope["energybox.access"]`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = bearer_token(scope)
        if token is not None:
            try:
                outcome: Access | LiveError = await database_sync_to_async(access_for_bearer)(token)
            except LiveError as exc:
                outcome = exc
            scope = {**scope, SCOPE_ACCESS_KEY: outcome}
        return await self.inner(scope, receive, send)
