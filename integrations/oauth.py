"""Hooks into django-oauth-toolkit: which scopes an application may get, and the OIDC claims."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import BaseScopes

from integrations.scopes import API_SCOPES, OIDC_SCOPES, parse_scopes


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
            return []
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
            "email_verified": lambda request: False,
        }
