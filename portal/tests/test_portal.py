from __future__ import annotations

import pytest

from accounts.models import Role
from accounts.tests.factories import USER_PASSWORD, MembershipFactory
from devices.demo import DEMO_PASSWORD, seed_demo
from devices.models import Device, Facility
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db


def test_the_login_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_the_home_page_requires_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_a_user_signs_in_and_sees_only_their_tenants_facilities(client):
    mine = FacilityFactory(name="Mine")
    FacilityFactory(name="Theirs")
    membership = MembershipFactory(tenant=mine.tenant)
    response = client.post("/login/", {"username": membership.user.username, "password": USER_PASSWORD}, follow=True)
    html = response.content.decode()
    assert "Mine" in html
    assert "Theirs" not in html


def test_a_wrong_password_gets_a_clear_message(client):
    membership = MembershipFactory()
    response = client.post("/login/", {"username": membership.user.username, "password": "nope"})
    assert "didn't match" in response.content.decode()


def test_a_facility_manager_sees_only_granted_facilities_on_the_home_page(client):
    granted = FacilityFactory(name="Granted")
    FacilityFactory(tenant=granted.tenant, name="Hidden")
    membership = MembershipFactory(tenant=granted.tenant, role=Role.FACILITY_MANAGER, facilities=[granted])
    client.force_login(membership.user)
    html = client.get("/").content.decode()
    assert "Granted" in html and "Hidden" not in html


def test_switching_to_a_foreign_tenant_is_refused(client):
    membership = MembershipFactory()
    foreign = FacilityFactory()
    client.force_login(membership.user)
    assert client.post("/tenant/", {"tenant_id": foreign.tenant_id}).status_code == 403
    assert client.post("/tenant/", {"tenant_id": "not-a-number"}).status_code == 403


def test_the_seeded_demo_logins_work_and_seeding_is_idempotent(client):
    seed_demo()
    counts = (Facility.objects.count(), Device.objects.count())
    seed_demo()
    assert (Facility.objects.count(), Device.objects.count()) == counts
    assert client.login(username="retail-admin", password=DEMO_PASSWORD)
    html = client.get("/").content.decode()
    assert "Supermarket Berlin Mitte" in html and "Petrol Station A9 Leipzig" in html
    assert "Home" not in html.split("<tbody>")[1]
