"""E-mail verification through a real local SMTP server (aiosmtpd): the OIDC `email_verified` claim is real."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core import signing
from django.test import Client

from accounts import services
from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.test_invitations import smtp  # noqa: F401 - the fixture
from integrations.oauth import EnergyboxOAuth2Validator

pytestmark = pytest.mark.django_db(transaction=True)


def _claim(user: User) -> bool:
    return EnergyboxOAuth2Validator().get_additional_claims()["email_verified"](SimpleNamespace(user=user))


def _link(inbox, to: str) -> str:  # type: ignore[no-untyped-def]
    rcpts, message = next((r, m) for r, m in reversed(inbox.messages) if to in r)
    body = message.get_payload(decode=True).decode()
    return re.search(r"https?://\S+/manage/verify-email/\S+/", body).group(0)  # type: ignore[union-attr]


def test_the_mailed_link_verifies_the_address_and_the_claim_follows(smtp):  # noqa: F811
    user = UserFactory(email="home@example.com")
    assert _claim(user) is False
    client = Client()
    client.force_login(user)
    assert client.post("/manage/verify-email/").status_code == 302
    link = _link(smtp, "home@example.com")
    response = client.get(link.split("testserver", 1)[-1])
    assert response.status_code == 200 and 'data-email-verified="yes"' in response.content.decode()
    user.refresh_from_db()
    assert user.verified_email == "home@example.com" and _claim(user) is True
    # A changed address is unverified again, and the old link no longer verifies anything.
    User.objects.filter(pk=user.pk).update(email="new@example.com")
    user.refresh_from_db()
    assert _claim(user) is False
    assert client.get(link.split("testserver", 1)[-1]).status_code == 400
    user.refresh_from_db()
    assert user.verified_email == "home@example.com" and _claim(user) is False


def test_a_forged_or_expired_link_is_a_400_and_verifies_nothing(monkeypatch):
    user = UserFactory(email="a@example.com")
    forged = signing.dumps({"u": user.pk, "e": "a@example.com"}, salt="another-salt")
    genuine = signing.dumps({"u": user.pk, "e": "a@example.com"}, salt=services.EMAIL_VERIFY_SALT)
    client = Client()
    for token in (forged, "nonsense", genuine[:-2] + "xx"):
        response = client.get(f"/manage/verify-email/{token}/")
        assert response.status_code == 400 and 'data-email-verified="no"' in response.content.decode()
    # Expired: the same genuine link, read once its time is up.
    monkeypatch.setattr(services, "EMAIL_VERIFY_MAX_AGE", timedelta(seconds=-1))
    assert client.get(f"/manage/verify-email/{genuine}/").status_code == 400
    user.refresh_from_db()
    assert user.verified_email == "" and _claim(user) is False


def test_sending_needs_a_signed_in_user_with_an_address(smtp):  # noqa: F811
    assert Client().post("/manage/verify-email/").status_code == 302  # to the login page
    assert smtp.messages == []
    user = UserFactory(email="")
    client = Client()
    client.force_login(user)
    client.post("/manage/verify-email/")
    assert smtp.messages == []
