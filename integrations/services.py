"""Writes of OAuth applications: register with chosen scopes, revoke tokens, delete."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken, RefreshToken, clear_expired
from oauth2_provider.settings import oauth2_settings

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from integrations.models import Application, RedeemedCode
from integrations.scopes import API_SCOPES, CONSUMER_APP_CLIENT_ID, CONSUMER_APP_SCOPES
from integrations.selectors import application_get, token_list


def _require_admin(access: Access) -> None:
    if not access.is_admin:
        raise TenantAccessDenied("Only tenant admins manage OAuth applications.")


@dataclass(frozen=True, slots=True)
class Registered:
    application: Application
    # Shown once: only its hash is stored.
    client_secret: str


@transaction.atomic
def application_register(
    *,
    access: Access,
    name: str,
    grant_type: str,
    scopes: list[str],
    redirect_uris: str = "",
    client_type: str = Application.CLIENT_CONFIDENTIAL,
) -> Registered:
    _require_admin(access)
    if grant_type not in (Application.GRANT_CLIENT_CREDENTIALS, Application.GRANT_AUTHORIZATION_CODE):
        raise ValidationError({"grant_type": "Choose client credentials or authorization code."})
    unknown = [scope for scope in scopes if scope not in API_SCOPES]
    if unknown or not scopes:
        raise ValidationError({"scopes": "Choose at least one of: " + ", ".join(API_SCOPES) + "."})
    if grant_type == Application.GRANT_CLIENT_CREDENTIALS and client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError({"client_type": "A client-credentials application must be confidential."})
    secret = generate_client_secret()
    application = Application(
        tenant_id=access.tenant_id,
        user_id=access.user_id,
        name=name,
        authorization_grant_type=grant_type,
        client_type=client_type,
        client_secret=secret,
        redirect_uris=" ".join(redirect_uris.split()),
        scope=" ".join(scope for scope in API_SCOPES if scope in scopes),
        algorithm=Application.RS256_ALGORITHM if grant_type == Application.GRANT_AUTHORIZATION_CODE else "",
    )
    application.full_clean()
    application.save()
    return Registered(application=application, client_secret=secret)


@transaction.atomic
def application_delete(*, access: Access, application_id: int) -> None:
    """Deleting an application revokes every token it was given."""
    _require_admin(access)
    application_get(access=access, application_id=application_id).delete()


@transaction.atomic
def token_revoke(*, access: Access, token_id: int) -> None:
    """Revoke an access token and the refresh token it came with."""
    _require_admin(access)
    token = token_list(access=access, include_expired=True).get(pk=token_id)
    for refresh in RefreshToken.objects.filter(access_token=token):
        refresh.revoke()
    AccessToken.objects.filter(pk=token.pk).delete()


@transaction.atomic
def platform_application_register(
    *, name: str, redirect_uris: str, client_type: str = Application.CLIENT_CONFIDENTIAL
) -> Registered:
    """A first-party single sign-on client (the portal on another host, the consumer app).

    It has no tenant and no API scope: it can only sign users in with OIDC, and the platform
    trusts it, so users are not asked to approve it.
    """
    secret = generate_client_secret()
    application = Application(
        tenant=None,
        name=name,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        client_type=client_type,
        client_secret=secret,
        redirect_uris=" ".join(redirect_uris.split()),
        scope="",
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    application.full_clean()
    application.save()
    return Registered(application=application, client_secret=secret)


# Loopback redirect URIs match any port (RFC 8252 §7.3), so `make run` and the tests need nothing more.
CONSUMER_APP_LOOPBACK = ("http://127.0.0.1/app/", "http://[::1]/app/")


def consumer_application_ensure(*, redirect_uris: tuple[str, ...] = ()) -> Application:
    """The consumer app's OAuth client (/app/): public (PKCE), no tenant, the scopes it uses,
    approved by the platform (one-click single sign-on). Run after every migrate (and test flush);
    a deployment's own `https://<host>/app/` comes from ENERGYBOX_APP_REDIRECT_URIS."""
    uris = " ".join(dict.fromkeys((*CONSUMER_APP_LOOPBACK, *redirect_uris)))
    application, created = Application.objects.get_or_create(
        client_id=CONSUMER_APP_CLIENT_ID,
        defaults={
            "name": "Energybox app",
            "tenant": None,
            "client_type": Application.CLIENT_PUBLIC,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "client_secret": "",
            "redirect_uris": uris,
            "post_logout_redirect_uris": uris,
            "scope": " ".join(CONSUMER_APP_SCOPES),
            "algorithm": Application.RS256_ALGORITHM,
            "skip_authorization": True,
        },
    )
    missing = [uri for uri in uris.split() if uri not in application.redirect_uris.split()]
    scope = " ".join(CONSUMER_APP_SCOPES)
    if not created and (missing or application.scope != scope):
        application.redirect_uris = " ".join((*application.redirect_uris.split(), *missing))
        application.scope = scope
        application.save(update_fields=["redirect_uris", "scope"])
    return application


def tokens_clear_expired() -> None:
    """Delete expired and revoked tokens and grants (REFRESH_TOKEN_EXPIRE_SECONDS bounds refresh tokens).

    A redeemed code is remembered as long as a refresh token it led to can live.
    """
    clear_expired()
    lifetime = dt.timedelta(seconds=oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS)
    RedeemedCode.objects.filter(created__lt=timezone.now() - lifetime).delete()
