"""Reads of OAuth applications and tokens, and the `Access` a token carries."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.selectors import access_for_user
from integrations.models import Application
from integrations.scopes import parse_scopes


def access_for_token(*, token: AccessToken) -> Access:
    """What a bearer token may see: its application's tenant, narrowed to its user's role if it has one.

    A client-credentials token acts for the whole tenant; its scopes decide what it may do. A token
    issued to a user never reaches further than that user's own membership in the application's tenant.
    """
    application = token.application
    if application is not None and application.tenant_id is None and token.user_id is not None:  # type: ignore[attr-defined]
        if parse_scopes(application.scope):  # type: ignore[attr-defined]
            # The platform's own consumer app, registered with API scopes by a platform admin: it acts
            # for its signed-in user in the user's own tenant, never further than that membership.
            if not token.user.is_active:  # type: ignore[union-attr]
                raise TenantAccessDenied("The user of this token is disabled.")
            return access_for_user(user=token.user)  # type: ignore[arg-type]
    if application is None or application.tenant_id is None:  # type: ignore[attr-defined]
        raise TenantAccessDenied("This token's application does not belong to a tenant.")
    tenant_id: int = application.tenant_id  # type: ignore[attr-defined]
    if token.user_id is None:
        return Access(tenant_id=tenant_id, role=Role.ADMIN, facility_ids=None, user_id=None)
    if not token.user.is_active:  # type: ignore[union-attr]
        raise TenantAccessDenied("The user of this token is disabled.")
    return access_for_user(user=token.user, tenant_id=tenant_id)  # type: ignore[arg-type]


def application_list(*, access: Access) -> QuerySet[Application]:
    return Application.objects.filter(tenant_id=access.tenant_id).order_by("-created")


def application_get(*, access: Access, application_id: int) -> Application:
    return application_list(access=access).get(pk=application_id)


def token_list(*, access: Access, include_expired: bool = False) -> QuerySet[AccessToken]:
    """Access tokens of the tenant's applications, newest first."""
    qs = AccessToken.objects.filter(application__tenant_id=access.tenant_id)
    if not include_expired:
        qs = qs.filter(expires__gt=timezone.now())
    return qs.select_related("application", "user").order_by("-created")
