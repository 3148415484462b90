"""Hooks into django-oauth-toolkit: which scopes an application may get, and the OIDC claims."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from oauth2_provider.models import AccessToken, Grant, RefreshToken
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import BaseScopes

from integrations.models import RedeemedCode
from integrations.scopes import API_SCOPES, OIDC_SCOPES, parse_scopes

logger = logging.getLogger(__name__)


def _checksum(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class ApplicationScopes(BaseScopes):
    """An application may request only the API scopes chosen when it was registered.

    OIDC scopes come on top for applications that sign users in. A token requested with no
    scope gets every API scope of its application.
    """

    def get_all_scopes(self) -> dict[str, str]:
        return {**API_SCOPES, **OIDC_SCOPES}

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is None:
            # Discovery documents ask without an application: they list everything offered.
            return list(API_SCOPES) + list(OIDC_SCOPES)
        allowed = [scope for scope in parse_scopes(application.scope) if scope in API_SCOPES]
        if application.authorization_grant_type == application.GRANT_AUTHORIZATION_CODE:
            allowed += list(OIDC_SCOPES)
        return allowed

    def get_default_scopes(self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any) -> list[str]:
        if application is None:
            return []
        return [scope for scope in parse_scopes(application.scope) if scope in API_SCOPES]


class EnergyboxOAuth2Validator(OAuth2Validator):
    # Request-agnostic claims (a dict of callables), so the discovery document lists them.
    def get_additional_claims(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "name": lambda request: request.user.get_full_name() or request.user.get_username(),
            "preferred_username": lambda request: request.user.get_username(),
            "email": lambda request: request.user.email,
            "email_verified": lambda request: request.user.email_verified,
        }

    def validate_bearer_token(self, token: str | None, scopes: Any, request: Any) -> bool:
        # RFC 6750 §2 allows a token in the query string or a form body; both end up in logs, proxies
        # and browser history, so only the Authorization header is accepted (oauthlib reads the
        # other two only when that header is absent).
        if "Authorization" not in request.headers:
            return False
        return bool(super().validate_bearer_token(token, scopes, request))

    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        valid = bool(super().validate_code(client_id, code, client, request, *args, **kwargs))
        if not valid and client is not None and not Grant.objects.filter(code=code, application=client).exists():
            _revoke_redeemed(application_id=client.pk, code=code)
        return valid

    def save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type == "authorization_code" and request.code and token.get("access_token"):
            access = AccessToken.objects.filter(token_checksum=_checksum(token["access_token"])).first()
            family = RefreshToken.objects.filter(access_token=access).values_list("token_family", flat=True).first()
            RedeemedCode.objects.create(
                application_id=request.client.pk,
                code_checksum=_checksum(request.code),
                access_token_checksum=_checksum(token["access_token"]),
                token_family=family,
            )
        return result


def _revoke_redeemed(*, application_id: int, code: str) -> None:
    """RFC 6749 §4.1.2: a code used twice may have been stolen, so what it was exchanged for is revoked."""
    redeemed = RedeemedCode.objects.filter(application_id=application_id, code_checksum=_checksum(code)).first()
    if redeemed is None:
        return
    if redeemed.token_family is not None:
        RefreshToken.revoke_family(redeemed.token_family)
    AccessToken.objects.filter(token_checksum=redeemed.access_token_checksum).delete()
    logger.warning("authorization code of application %s replayed; its tokens were revoked", application_id)
