"""Tenant isolation: every selector, with two tenants and a facility manager limited to a grant."""

from __future__ import annotations

import pytest

from accounts.models import Role
from accounts.selectors import access_for_tenant, access_for_user
from accounts.tests.factories import MembershipFactory
from devices import selectors
from devices.models import Channel, Device, Facility
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, FacilityFactory, LoadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants():
    """Two tenants, each with two facilities, a load, a group and a device per facility."""
    world = {}
    for label in ("a", "b"):
        f1 = FacilityFactory()
        f2 = FacilityFactory(tenant=f1.tenant)
        world[label] = {
            "tenant": f1.tenant,
            "facilities": [f1, f2],
            "loads": [LoadFactory(facility=f1), LoadFactory(facility=f2)],
            "groups": [DeviceGroupFactory(tenant=f1.tenant)],
            "devices": [DeviceFactory(facility=f1), DeviceFactory(facility=f2)],
        }
    return world


LISTS = {
    "facility_list": lambda w: {f.pk for f in w["facilities"]},
    "load_list": lambda w: {x.pk for x in w["loads"]},
    "device_list": lambda w: {d.pk for d in w["devices"]},
    "device_group_list": lambda w: {g.pk for g in w["groups"]},
    "channel_list": lambda w: set(Channel.objects.filter(device__in=w["devices"]).values_list("pk", flat=True)),
}


@pytest.mark.parametrize("selector", sorted(LISTS))
def test_every_list_selector_returns_only_the_tenants_rows(two_tenants, selector):
    for mine, theirs in (("a", "b"), ("b", "a")):
        access = access_for_tenant(tenant=two_tenants[mine]["tenant"])
        got = set(getattr(selectors, selector)(access=access).values_list("pk", flat=True))
        assert got == LISTS[selector](two_tenants[mine])
        assert not got & LISTS[selector](two_tenants[theirs])


@pytest.mark.parametrize(
    ("getter", "kwarg", "model", "key"),
    [
        ("facility_get", "facility_id", Facility, "facilities"),
        ("device_get", "device_id", Device, "devices"),
    ],
)
def test_getters_treat_another_tenants_object_as_missing(two_tenants, getter, kwarg, model, key):
    access = access_for_tenant(tenant=two_tenants["a"]["tenant"])
    foreign = two_tenants["b"][key][0]
    with pytest.raises(model.DoesNotExist):
        getattr(selectors, getter)(access=access, **{kwarg: foreign.pk})
    own = two_tenants["a"][key][0]
    assert getattr(selectors, getter)(access=access, **{kwarg: own.pk}).pk == own.pk


def test_channel_get_refuses_another_tenants_channel(two_tenants):
    access = access_for_tenant(tenant=two_tenants["a"]["tenant"])
    foreign = Channel.objects.filter(device=two_tenants["b"]["devices"][0]).first()
    with pytest.raises(Channel.DoesNotExist):
        selectors.channel_get(access=access, channel_id=foreign.pk)


@pytest.mark.parametrize("selector", ["facility_list", "load_list", "device_list", "channel_list"])
def test_a_facility_manager_sees_only_the_granted_facility(two_tenants, selector):
    world = two_tenants["a"]
    granted, hidden = world["facilities"]
    membership = MembershipFactory(tenant=world["tenant"], role=Role.FACILITY_MANAGER, facilities=[granted])
    access = access_for_user(user=membership.user)
    rows = list(getattr(selectors, selector)(access=access))
    assert rows, "the granted facility's rows must be visible"
    for row in rows:
        facility_id = {
            "facility_list": lambda r: r.pk,
            "load_list": lambda r: r.facility_id,
            "device_list": lambda r: r.facility_id,
            "channel_list": lambda r: r.device.facility_id,
        }[selector](row)
        assert facility_id == granted.pk
    with pytest.raises(Facility.DoesNotExist):
        selectors.facility_get(access=access, facility_id=hidden.pk)
