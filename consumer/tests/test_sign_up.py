"""A household signs itself up on /signup/, confirms its address by the mailed link (a real local SMTP
server, aiosmtpd) and claims its meter into the home it got."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import Membership, Role, Tenant, User
from accounts.tests.factories import UserFactory
from accounts.tests.test_email_verification import _link
from accounts.tests.test_invitations import smtp  # noqa: F401 - the fixture
from devices.models import Device, Facility
from devices.services import factory_device_create
from devices.tests.factories import DeviceTypeFactory

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = {
    "email": "Anna@Example.com",
    "password": "a long enough passphrase 42",
    "household_name": "Haus Anna",
    "timezone": "Europe/Berlin",
}


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def _stored() -> tuple[int, int, int, int]:
    return (User.objects.count(), Tenant.objects.count(), Membership.objects.count(), Facility.objects.count())


def test_sign_up_verify_and_claim_the_meter_into_the_new_home(smtp):  # noqa: F811
    client = Client()
    page = client.get("/signup/")
    assert page.status_code == 200 and 'id="sign-up-form"' in page.content.decode()
    response = client.post("/signup/", GOOD)
    assert response.status_code == 200, response.content.decode()
    assert 'data-signed-up="Anna@example.com"' in response.content.decode()
    user = User.objects.get(email="Anna@example.com")
    assert user.username == "Anna@example.com" and user.check_password(GOOD["password"])
    assert not user.email_verified
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.ADMIN and membership.tenant.kind == Tenant.Kind.CONSUMER
    assert membership.tenant.name == "Haus Anna"
    home = Facility.objects.get(tenant=membership.tenant)
    assert home.kind == Facility.Kind.HOME and home.timezone == "Europe/Berlin"
    # The link arrived over SMTP and confirms the address; the same link again is refused.
    link = _link(smtp, "Anna@example.com").split("testserver", 1)[-1]
    assert 'data-email-verified="yes"' in client.get(link).content.decode()
    user.refresh_from_db()
    assert user.email_verified
    replay = client.get(link)
    assert replay.status_code == 400 and "used already" in replay.content.decode()
    # Signed in by the sign-up, the household claims its meter into its home (the portal's claim flow).
    issued = factory_device_create(serial="HOME-0001", device_type=DeviceTypeFactory())
    claimed = client.post(
        "/manage/devices/claim/", {"serial": "HOME-0001", "claim_code": issued.claim_code, "facility": home.pk}
    )
    assert claimed.status_code == 302, claimed.content.decode()
    assert Device.objects.get(serial="HOME-0001").facility_id == home.pk


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a" * 250 + "@example.com"}, "email"),
        ({"household_name": "x" * 101}, "household_name"),
        ({"household_name": "   "}, "household_name"),
        ({"password": "123"}, "password"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(smtp, change, field):  # noqa: F811
    before = _stored()
    response = Client().post("/signup/", {**GOOD, **change})
    assert response.status_code == 400
    assert f'name="{field}"' in response.content.decode() and 'class="errorlist' in response.content.decode()
    assert _stored() == before and smtp.messages == []


def test_an_address_with_an_account_is_refused_whatever_its_case(smtp):  # noqa: F811
    UserFactory(email="anna@example.com")
    before = _stored()
    response = Client().post("/signup/", GOOD)
    assert response.status_code == 400 and "exists already" in response.content.decode()
    assert _stored() == before and smtp.messages == []


def test_sign_ups_from_one_address_are_rate_limited(smtp, settings):  # noqa: F811
    settings.SIGNUP_RATE = "2/hour"
    client = Client()
    assert client.post("/signup/", {**GOOD, "email": "bad"}).status_code == 400
    assert client.post("/signup/", {**GOOD, "email": "one@example.com"}).status_code == 200
    before = _stored()
    limited = Client().post("/signup/", {**GOOD, "email": "two@example.com"})
    assert limited.status_code == 429 and "Too many sign-ups" in limited.content.decode()
    assert _stored() == before and not User.objects.filter(email="two@example.com").exists()
