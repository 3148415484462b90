from __future__ import annotations

import datetime as dt
import secrets

import factory
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.tests.factories import TenantFactory
from integrations.models import Application
from integrations.scopes import API_SCOPES

CLIENT_SECRET = "client-secret-for-tests-0123456789"  # noqa: S105


class ApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Application

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Integration {n}")
    client_type = Application.CLIENT_CONFIDENTIAL
    authorization_grant_type = Application.GRANT_CLIENT_CREDENTIALS
    client_secret = CLIENT_SECRET
    scope = " ".join(API_SCOPES)


class AccessTokenFactory(factory.django.DjangoModelFactory):
    """A bearer token as /o/token/ would issue it."""

    class Meta:
        model = AccessToken

    application = factory.SubFactory(ApplicationFactory)
    user = None
    token = factory.LazyFunction(lambda: secrets.token_urlsafe(30))
    scope = " ".join(API_SCOPES)
    expires = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(hours=1))

    class Params:
        expired = factory.Trait(expires=factory.LazyFunction(lambda: timezone.now() - dt.timedelta(seconds=1)))


def bearer(token: AccessToken) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token.token}"}
