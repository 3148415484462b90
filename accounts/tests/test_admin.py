"""The Django admin refuses memberships that grant another tenant's facilities (issue 18)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import Membership, Role
from accounts.tests.factories import MembershipFactory, TenantFactory, UserFactory
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _membership_form(user, tenant, facilities):
    return {
        "user": user.pk,
        "tenant": tenant.pk,
        "role": Role.FACILITY_MANAGER,
        "facilities": [facility.pk for facility in facilities],
    }


def test_the_membership_admin_refuses_a_grant_of_another_tenants_facility(staff_client):
    own = FacilityFactory()
    foreign = FacilityFactory()
    user = UserFactory()

    response = staff_client.post(
        reverse("admin:accounts_membership_add"), _membership_form(user, own.tenant, [own, foreign])
    )

    assert response.status_code == 200
    assert "only grant facilities of its own tenant" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()


def test_the_membership_admin_saves_a_grant_of_the_tenants_own_facilities(staff_client):
    own = FacilityFactory()
    user = UserFactory()
    response = staff_client.post(reverse("admin:accounts_membership_add"), _membership_form(user, own.tenant, [own]))
    assert response.status_code == 302
    assert list(Membership.objects.get(user=user).facilities.all()) == [own]


def test_moving_a_membership_to_another_tenant_with_its_old_grants_is_refused(staff_client):
    granted = FacilityFactory()
    membership = MembershipFactory(tenant=granted.tenant, role=Role.FACILITY_MANAGER, facilities=[granted])
    other = TenantFactory()

    response = staff_client.post(
        reverse("admin:accounts_membership_change", args=[membership.pk]),
        _membership_form(membership.user, other, [granted]),
    )

    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.tenant_id == granted.tenant_id


def test_the_user_admins_membership_inline_refuses_a_foreign_facility(staff_client):
    own, foreign = FacilityFactory(), FacilityFactory()
    user = UserFactory()
    response = staff_client.post(
        reverse("admin:accounts_user_change", args=[user.pk]),
        {
            "username": user.username,
            "email": user.email,
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-tenant": own.tenant_id,
            "memberships-0-role": Role.FACILITY_MANAGER,
            "memberships-0-facilities": [foreign.pk],
        },
    )
    assert response.status_code == 200
    assert "only grant facilities of its own tenant" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()


def test_the_models_clean_refuses_saved_grants_of_another_tenant():
    foreign = FacilityFactory()
    membership = MembershipFactory(role=Role.FACILITY_MANAGER)
    membership.facilities.add(foreign)  # as a script or a shell could
    with pytest.raises(ValidationError, match="own tenant"):
        membership.full_clean()
