from __future__ import annotations

import pytest

from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.selectors import access_for_user
from accounts.tests.factories import MembershipFactory, TenantFactory, UserFactory
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db


def test_it_refuses_a_user_without_membership_in_the_tenant():
    membership = MembershipFactory()
    other = TenantFactory()
    with pytest.raises(TenantAccessDenied):
        access_for_user(user=membership.user, tenant_id=other.pk)


def test_it_refuses_a_user_with_no_tenant_at_all():
    with pytest.raises(TenantAccessDenied):
        access_for_user(user=UserFactory())


def test_a_facility_manager_sees_only_granted_facilities():
    granted = FacilityFactory()
    FacilityFactory(tenant=granted.tenant)
    membership = MembershipFactory(tenant=granted.tenant, role=Role.FACILITY_MANAGER, facilities=[granted])
    access = access_for_user(user=membership.user)
    assert access.facility_ids == frozenset({granted.pk})
    assert access.manages_facility(granted.pk)


def test_a_viewer_sees_everything_but_manages_nothing():
    facility = FacilityFactory()
    membership = MembershipFactory(tenant=facility.tenant, role=Role.VIEWER)
    access = access_for_user(user=membership.user)
    assert access.facility_ids is None
    assert not access.manages_facility(facility.pk)


def test_a_user_in_two_tenants_picks_the_one_asked_for():
    first = MembershipFactory()
    second = MembershipFactory(user=first.user)
    assert access_for_user(user=first.user, tenant_id=second.tenant_id).tenant_id == second.tenant_id
