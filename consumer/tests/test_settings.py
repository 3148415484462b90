"""The app's settings through PATCH /api/v1/me/: the user's language, and a notification address that is
unverified until the link mailed to it (a real local SMTP server, aiosmtpd) is opened."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import MembershipFactory, UserFactory
from accounts.tests.test_email_verification import _link
from accounts.tests.test_invitations import smtp  # noqa: F401 - the fixture
from integrations.models import Application
from integrations.scopes import CONSUMER_APP_CLIENT_ID, FLEET_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db(transaction=True)

APP = f"openid profile email {FLEET_READ}"


def member(email: str = "home@example.com") -> User:
    user = UserFactory(email=email, verified_email=email, language="en")
    MembershipFactory(user=user)
    return user


def patch(user: User | None, body: dict, scope: str = APP, **kwargs):  # type: ignore[no-untyped-def]
    if user is None:
        token = AccessTokenFactory(application=ApplicationFactory(), scope=scope)
    else:
        application = Application.objects.get(client_id=CONSUMER_APP_CLIENT_ID)
        token = AccessTokenFactory(application=application, user=user, scope=scope)
    return Client().patch("/api/v1/me/", body, content_type="application/json", **bearer(token), **kwargs)


def test_the_language_is_saved_on_the_user_as_the_portal_saves_it():
    user = member()
    response = patch(user, {"language": "de"})
    assert response.status_code == 200 and response.json()["user"]["language"] == "de"
    user.refresh_from_db()
    assert user.language == "de"
    refused = patch(user, {"language": "fr"})
    assert refused.status_code == 400 and "language" in refused.json()["error"]["fields"]
    user.refresh_from_db()
    assert user.language == "de"


def test_a_new_address_is_unverified_until_its_mailed_link_is_opened(smtp):  # noqa: F811
    user = member()
    response = patch(user, {"email": "new@example.com"})
    assert response.status_code == 200
    assert response.json()["user"] | {"id": 0} == response.json()["user"] | {
        "id": 0,
        "email": "new@example.com",
        "email_verified": False,
    }
    link = _link(smtp, "new@example.com").split("testserver", 1)[-1]
    assert Client().get(link).status_code == 200
    user.refresh_from_db()
    assert user.email == "new@example.com" and user.email_verified


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address"},
        {"email": "taken@example.com"},
        {"email": "x" * 250 + "@example.com"},
        {"language": "de", "email": "taken@example.com"},
    ],
    ids=["malformed", "taken", "oversized", "both-or-neither"],
)
def test_a_bad_address_is_a_400_and_changes_nothing(smtp, body):  # noqa: F811
    UserFactory(email="Taken@example.com")
    user = member()
    response = patch(user, body)
    assert response.status_code == 400 and "email" in response.json()["error"]["fields"]
    user.refresh_from_db()
    assert (user.email, user.email_verified, user.language) == ("home@example.com", True, "en")
    assert smtp.messages == []


def test_it_needs_a_users_token_with_the_profile_scope():
    user = member()
    assert patch(user, {"language": "de"}, scope=FLEET_READ).status_code == 403
    assert patch(None, {"language": "de"}).status_code == 403
    user.refresh_from_db()
    assert user.language == "en"
