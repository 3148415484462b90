"""OAuth 2.0 bearer tokens on the live websockets.

Browsers sign in with the portal session. Apps and integrators that hold a token send it in the
upgrade request's header, `Authorization: Bearer <token>`, and need the `readings:read` scope. The
socket then gets the token's `Access` (its application's tenant, narrowed to its user's role, as
for the REST API), and the consumers authorize every subscription with it exactly as with a
session's. A header that is present but wrong is never ignored in favour of the session:

- an unknown, expired or revoked token closes the socket with 4401;
- a valid token without `readings:read`, or whose application has no tenant, closes it with 4403;
- an open socket is closed with 4401 when its token expires, and within `LIVE_TOKEN_RECHECK_S`
  of the token being revoked or losing its scope.

Browsers cannot set a header on a WebSocket, so the app sends the token as the second of two
subprotocols, `new WebSocket(url, ["energybox.bearer", token])`; the server answers with the
`energybox.bearer` subprotocol alone, and the token is taken out of the scope before any consumer
(or log line) sees it. The same validator and scope rules apply; a socket with both is malformed.

A request with a Bearer header and no `Origin` is not a browser's (a browser always sends one and
cannot set the header), so `energybox.routing` lets it past the origin check.

Enabled by default through `WEBSOCKET_AUTH_MIDDLEWARE`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthRequest

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from integrations.scopes import READINGS_READ
from integrations.selectors import access_for_token
from portal.access import SCOPE_ACCESS_KEY, SCOPE_CREDENTIAL_KEY
from portal.liveprotocol import CloseCode, LiveError

MAX_TOKEN_LENGTH = 512
BEARER_SUBPROTOCOL = "energybox.bearer"


def subprotocol_token(scope: dict[str, Any]) -> str | None:
    """The token of the subprotocols `["energybox.bearer", "<token>"]`, '' for a malformed pair, None without."""
    offered = [str(protocol) for protocol in scope.get("subprotocols") or ()]
    if BEARER_SUBPROTOCOL not in offered:
        return None
    if len(offered) != 2 or offered[0] != BEARER_SUBPROTOCOL or not 0 < len(offered[1]) <= MAX_TOKEN_LENGTH:
        return ""
    return offered[1]


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer …` header or of the bearer subprotocol, '' for a malformed
    one, None without one.

    Another scheme (Basic, say) is not ours to judge: None. Two Authorization headers are malformed, and
    so is a token in both places.
    """
    values = [value for name, value in scope.get("headers", ()) if name.lower() == b"authorization"]
    in_protocol = subprotocol_token(scope)
    if in_protocol is not None:
        return "" if values else in_protocol
    if not values:
        return None
    parts = values[0].decode("latin-1").split()
    if not parts or not parts[0].lower().startswith("bearer"):
        return "" if len(values) > 1 else None
    if len(values) > 1 or len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > MAX_TOKEN_LENGTH:
        return ""
    return parts[1]


def access_for_bearer(token: str) -> TokenAccess:
    """The `Access` of a bearer token with `readings:read`; raises `LiveError` with the close code."""
    if not token:
        raise LiveError(
            CloseCode.UNAUTHENTICATED,
            (
                "Malformed bearer token: expected 'Authorization: Bearer <token>' "
                f"or the subprotocols ['{BEARER_SUBPROTOCOL}', '<token>']."
            ),
        )
    # The token came in the upgrade request's Authorization header, which the validator insists on.
    request = OAuthRequest(uri="", headers={"Authorization": f"Bearer {token}"})
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    if not validator.validate_bearer_token(token, [], request):
        raise LiveError(CloseCode.UNAUTHENTICATED, "The bearer token is unknown, expired or revoked.")
    access_token = request.access_token
    if not access_token.allow_scopes([READINGS_READ]):
        raise LiveError(CloseCode.FORBIDDEN, f"This token lacks the scope {READINGS_READ!r}.")
    try:
        access = access_for_token(token=access_token)
    except TenantAccessDenied as exc:
        raise LiveError(CloseCode.FORBIDDEN, str(exc)) from exc
    return TokenAccess(access=access, recheck=functools.partial(access_for_bearer, token), expires=access_token.expires)


@dataclass(frozen=True)
class TokenAccess:
    """A token's `Access`, when the token expires, and how to check it again (revocation)."""

    access: Access
    recheck: Callable[[], TokenAccess]
    expires: datetime


class BearerTokenMiddleware:
    """Puts the token's `Access`, or the `LiveError` that refuses it, in `scope["energybox.access"]`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = bearer_token(scope)
        if subprotocol_token(scope) is not None:
            scope, send = _without_token(scope, send)
        if token is not None:
            try:
                granted = await database_sync_to_async(access_for_bearer)(token)
            except LiveError as exc:
                scope = {**scope, SCOPE_ACCESS_KEY: exc}
            else:
                scope = {**scope, SCOPE_ACCESS_KEY: granted.access, SCOPE_CREDENTIAL_KEY: granted}
        return await self.inner(scope, receive, send)


def _without_token(scope: dict[str, Any], send: Any) -> tuple[dict[str, Any], Any]:
    """The scope with the token out of its subprotocols and headers, and a `send` that accepts the
    socket with the bearer subprotocol (a browser drops a socket whose answer names none it offered)."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name.lower() != b"sec-websocket-protocol"]

    async def answering(message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": BEARER_SUBPROTOCOL}
        await send(message)

    return {**scope, "subprotocols": [BEARER_SUBPROTOCOL], "headers": headers}, answering
